"""A PyTorch replica of kiln's `imdb_lstm` example, to tell what the tutorial's model reaches on
`imdb_5k.tsv.gz` independently of kiln.

Same data pipeline as `examples/imdb_lstm/main.rs`: the same seeded xorshift shuffle and 50/50
split, `<br />` removed, Keras `Tokenizer(num_words=5000, oov_token)` semantics fitted on the
training half, `pad_sequences(maxlen, padding='pre', truncating='pre')`. Same model with Keras's
initializers: Embedding U(-0.05, 0.05), LSTM kernel glorot_uniform, recurrent kernel orthogonal,
unit forget bias, Dense glorot_uniform; Adam(lr 1e-3, eps 1e-7), binary crossentropy,
batch 64, shuffled every epoch.

    python3 benches/pytorch/imdb_reference.py [--epochs 3] [--maxlen 500] [--seeds 1,2,3]
        [--recurrent orthogonal|glorot] [--vocab-from train|all] [--dropout 0.0] [--device cpu|cuda]
        [--reviews N]

Prints the test accuracy after every epoch, per seed, and the mean and spread of the final ones.
Needs torch and numpy.
"""

import argparse
import gzip
import math
import os
import re
import time

import numpy as np
import torch

FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
MASK = (1 << 64) - 1


def load(path):
    labels, texts = [], []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        next(f)
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            label, _id, review = line.split("\t", 2)
            labels.append(int(label))
            texts.append(review)
    return labels, texts


def kiln_order(n, seed):
    """examples/imdb_lstm/main.rs's seeded Fisher-Yates with xorshift64."""
    order = list(range(n))
    s = ((seed * 0x9E3779B97F4A7C15) & MASK) | 1
    for i in range(n - 1, 0, -1):
        s ^= (s << 13) & MASK
        s ^= s >> 7
        s ^= (s << 17) & MASK
        j = s % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def words(text):
    text = text.lower()
    text = text.translate(str.maketrans({c: " " for c in FILTERS}))
    return [w for w in text.split(" ") if w]


def fit_tokenizer(texts, num_words):
    counts = {}
    for t in texts:
        for w in words(t):
            counts[w] = counts.get(w, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])  # stable: first-seen order on ties
    index = {"<oov>": 1}
    for i, (w, _) in enumerate(ranked):
        index[w] = i + 2
    return index


def to_sequences(texts, index, num_words, maxlen):
    out = np.zeros((len(texts), maxlen), dtype=np.int64)
    for r, t in enumerate(texts):
        seq = []
        for w in words(t):
            i = index.get(w, 1)
            seq.append(i if i < num_words else 1)
        seq = seq[-maxlen:]
        if seq:
            out[r, maxlen - len(seq):] = seq
    return out


class Model(torch.nn.Module):
    def __init__(self, units, recurrent, dropout):
        super().__init__()
        self.emb = torch.nn.Embedding(5000, 32)
        self.lstm = torch.nn.LSTM(32, units, batch_first=True)
        self.drop = torch.nn.Dropout(dropout)
        self.out = torch.nn.Linear(units, 1)
        torch.nn.init.uniform_(self.emb.weight, -0.05, 0.05)
        # PyTorch gate order i, f, g, o; Keras kernels are glorot over [in, 4u] / orthogonal [u, 4u]
        w_ih = torch.empty(32, 4 * units)
        torch.nn.init.xavier_uniform_(w_ih)
        w_hh = torch.empty(units, 4 * units)
        if recurrent == "orthogonal":
            torch.nn.init.orthogonal_(w_hh)
        else:
            torch.nn.init.xavier_uniform_(w_hh)
        with torch.no_grad():
            self.lstm.weight_ih_l0.copy_(w_ih.t())
            self.lstm.weight_hh_l0.copy_(w_hh.t())
            self.lstm.bias_ih_l0.zero_()
            self.lstm.bias_hh_l0.zero_()
            self.lstm.bias_ih_l0[units:2 * units] = 1.0
        torch.nn.init.xavier_uniform_(self.out.weight)
        torch.nn.init.zeros_(self.out.bias)

    def forward(self, x):
        h, _ = self.lstm(self.emb(x))
        return self.out(self.drop(h[:, -1, :])).squeeze(1)


def accuracy(m, x, y):
    m.eval()
    with torch.no_grad():
        logit = torch.cat([m(x[b:b + 256]) for b in range(0, len(x), 256)])
    m.train()
    return ((logit > 0).float() == y).float().mean().item()


def run(seed, args, data):
    x_tr, y_tr, x_te, y_te = data
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    m = Model(100, args.recurrent, args.dropout).to(x_tr.device)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(args.epochs):
        m.train()
        perm = torch.randperm(len(x_tr), generator=gen).to(x_tr.device)
        t0, tot, correct = time.time(), 0.0, 0
        for b in range(0, len(x_tr), 64):
            idx = perm[b:b + 64]
            opt.zero_grad()
            logit = m(x_tr[idx])
            loss = loss_fn(logit, y_tr[idx])
            loss.backward()
            opt.step()
            tot += loss.item() * len(idx)
            correct += ((logit > 0).float() == y_tr[idx]).sum().item()
        test = accuracy(m, x_te, y_te)
        print(f"  seed {seed} epoch {epoch + 1}: loss {tot / len(x_tr):.4f} "
              f"acc {correct / len(x_tr):.4f} test acc {test:.4f} ({time.time() - t0:.1f} s)",
              flush=True)
    return test


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--maxlen", type=int, default=500)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--split-seed", type=int, default=7)
    p.add_argument("--recurrent", default="orthogonal", choices=["orthogonal", "glorot"])
    p.add_argument("--vocab-from", default="train", choices=["train", "all"])
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--reviews", type=int, default=0,
                   help="the first N reviews of the file only (the example's --reviews; 0: all)")
    args = p.parse_args()
    torch.set_num_threads(2)
    data_dir = os.environ.get("KILN_DATA_DIR", os.path.join(os.path.dirname(__file__),
                                                            "../../../shared/data"))
    labels, texts = load(os.path.join(data_dir, "imdb_5k.tsv.gz"))
    if args.reviews:
        labels, texts = labels[:args.reviews], texts[:args.reviews]
    texts = [t.replace("<br />", " ") for t in texts]
    order = kiln_order(len(texts), args.split_seed)
    half = len(texts) // 2
    tr, te = order[:half], order[half:]
    vocab_texts = [texts[i] for i in tr] if args.vocab_from == "train" else texts
    index = fit_tokenizer(vocab_texts, 5000)
    x_tr = torch.from_numpy(to_sequences([texts[i] for i in tr], index, 5000, args.maxlen))
    x_te = torch.from_numpy(to_sequences([texts[i] for i in te], index, 5000, args.maxlen))
    y_tr = torch.tensor([float(labels[i]) for i in tr])
    y_te = torch.tensor([float(labels[i]) for i in te])
    x_tr, y_tr, x_te, y_te = (t.to(args.device) for t in (x_tr, y_tr, x_te, y_te))
    print(f"imdb: {len(tr)} train / {len(te)} test, maxlen {args.maxlen}, "
          f"recurrent {args.recurrent}, vocab from {args.vocab_from}", flush=True)
    accs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        acc = run(seed, args, (x_tr, y_tr, x_te, y_te))
        accs.append(acc)
        print(f"seed {seed}: test accuracy {100 * acc:.2f} %", flush=True)
    mean = sum(accs) / len(accs)
    sd = math.sqrt(sum((a - mean) ** 2 for a in accs) / max(1, len(accs) - 1))
    print(f"mean {100 * mean:.2f} % (sd {100 * sd:.2f}) over {len(accs)} seeds")


if __name__ == "__main__":
    main()
