//! Model views: Keras's `summary()` table ([`Sequential::summary`]) and diagrams (Keras `keras.utils.plot_model(model, show_shapes=True)`): the layers as
//! Graphviz DOT text ([`Sequential::to_dot`]) and a PNG drawn by Graphviz's `dot`
//! ([`Sequential::plot_model`]).

use super::Sequential;
use crate::layers::keras_shape;
use crate::layers::Entry;
use crate::{LayerError, Result};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// Escapes the characters that are special in a DOT record label or quoted string.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '{' | '}' | '|' | '<' | '>' | '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Sequential {
    /// The model as a Graphviz DOT digraph, top to bottom, one record node per layer as
    /// Keras's `plot_model(show_shapes=True)` draws it: `name: Class` beside its input and
    /// output shapes (`(None, 4)`). Like Keras, a model without an explicit [`InputLayer`]
    /// gets an `<first layer>_input: InputLayer` node on top.
    ///
    /// [`InputLayer`]: crate::InputLayer
    pub fn to_dot(&self) -> String {
        let mut nodes: Vec<(String, String, String, String)> = vec![];
        if let Some(first) = self.stack.entries().first() {
            if !first.layer.is_input() {
                let shape = format!("[{}]", keras_shape(&first.input));
                nodes.push((
                    format!("{}_input", first.name),
                    "InputLayer".into(),
                    shape.clone(),
                    shape,
                ));
            }
        }
        for e in self.stack.entries() {
            let (i, o) = if e.layer.is_input() {
                let s = format!("[{}]", keras_shape(&e.output));
                (s.clone(), s)
            } else {
                (keras_shape(&e.input), keras_shape(&e.output))
            };
            nodes.push((e.name.clone(), e.layer.kind().into(), i, o));
        }
        let mut s = String::new();
        let _ = writeln!(s, "digraph model {{");
        let _ = writeln!(s, "  graph [rankdir=TB, dpi=96];");
        let _ = writeln!(s, "  node [shape=record, fontname=\"Helvetica\"];");
        for (name, class, input, output) in &nodes {
            let _ = writeln!(
                s,
                "  \"{}\" [label=\"{}: {}|{{input:|output:}}|{{{{{}}}|{{{}}}}}\"];",
                escape(name),
                escape(name),
                escape(class),
                escape(input),
                escape(output)
            );
        }
        for pair in nodes.windows(2) {
            let _ = writeln!(
                s,
                "  \"{}\" -> \"{}\";",
                escape(&pair[0].0),
                escape(&pair[1].0)
            );
        }
        s.push_str("}\n");
        s
    }

    /// Draws [`Sequential::to_dot`] to a PNG at `path` with Graphviz's `dot` (Keras
    /// `plot_model(model, to_file=path, show_shapes=True)`). A missing Graphviz is a
    /// [`LayerError::Graphviz`] naming the fix, not a panic.
    pub fn plot_model(&self, path: impl AsRef<Path>) -> Result<()> {
        self.plot_model_with(path, Path::new("dot"))
    }

    /// [`Sequential::plot_model`] with an explicit `dot` program.
    pub fn plot_model_with(&self, path: impl AsRef<Path>, dot: &Path) -> Result<()> {
        let path = path.as_ref();
        let mut child = Command::new(dot)
            .arg("-Tpng")
            .arg("-o")
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                LayerError::Graphviz(if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "Graphviz's `{}` was not found; hint: install Graphviz (e.g. `apt \
                         install graphviz`), or render `to_dot()` elsewhere",
                        dot.display()
                    )
                } else {
                    format!("cannot run `{}`: {e}", dot.display())
                })
            })?;
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(self.to_dot().as_bytes()));
        let out = child
            .wait_with_output()
            .map_err(|e| LayerError::Graphviz(format!("`{}`: {e}", dot.display())))?;
        if !out.status.success() {
            return Err(LayerError::Graphviz(format!(
                "`{} -Tpng -o {}` failed ({}): {}",
                dot.display(),
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        if let Some(Err(e)) = written {
            return Err(LayerError::Graphviz(format!(
                "writing to `{}`: {e}",
                dot.display()
            )));
        }
        Ok(())
    }

    /// Keras's `summary()` table.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let rule = "_".repeat(65);
        let _ = writeln!(s, "Model: \"sequential\"\n{rule}");
        let _ = writeln!(
            s,
            "{:<29}{:<26}{:>10}",
            "Layer (type)", "Output Shape", "Param #"
        );
        let _ = writeln!(s, "{}", "=".repeat(65));
        let mut total = 0;
        // Keras shows no row for an InputLayer
        let shown: Vec<&Entry> = self
            .stack
            .entries()
            .iter()
            .filter(|e| !e.layer.is_input())
            .collect();
        for (i, e) in shown.iter().enumerate() {
            let n: usize = e
                .params
                .iter()
                .map(|p| p.shape.iter().product::<usize>())
                .sum();
            total += n;
            let shape = keras_shape(&e.output);
            let _ = writeln!(
                s,
                "{:<29}{:<26}{:>10}",
                format!("{} ({})", e.name, e.layer.kind()),
                shape,
                n
            );
            let _ = writeln!(
                s,
                "{}",
                if i + 1 == shown.len() {
                    "=".repeat(65)
                } else {
                    rule.clone()
                }
            );
        }
        let _ = writeln!(
            s,
            "Total params: {total}\nTrainable params: {total}\nNon-trainable params: 0\n{rule}"
        );
        s
    }
}
