//! The driver's pipeline cache on disk (`wgpu::PipelineCache`, Vulkan only).
//!
//! Where the device has `Features::PIPELINE_CACHE`, every pipeline kiln creates goes through
//! one `wgpu::PipelineCache` whose data is kept beside the plan cache, in
//! `<plan cache dir>/pipelines/<wgpu::util::pipeline_cache_key>.bin`, and rewritten
//! (atomically) after each plan load that created pipelines. The file is the driver's blob
//! behind a small kiln header (magic, length, xxh3 checksum): a file kiln did not write, or a
//! torn or corrupt one, is ignored (a logged miss) and never handed to the driver, which
//! checks its own header (vendor, device, driver version) in turn. On lavapipe the blob holds
//! little (llvmpipe compiles at first dispatch, and Mesa's own shader cache is what makes
//! warm starts fast there); on discrete-GPU Vulkan drivers it holds the compiled pipelines.

use std::path::PathBuf;
use twox_hash::XxHash3_64;

const MAGIC: &[u8; 8] = b"KILNPC01";

/// A pipeline cache and the file it persists to.
pub(crate) struct DiskPipelineCache {
    pub(crate) cache: wgpu::PipelineCache,
    path: PathBuf,
    /// Checksum of the data last read or written (skip rewriting unchanged data).
    saved: u64,
}

fn wrap(data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 24);
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&(data.len() as u64).to_le_bytes());
    v.extend_from_slice(&XxHash3_64::oneshot(data).to_le_bytes());
    v.extend_from_slice(data);
    v
}

fn unwrap(file: &[u8]) -> Option<&[u8]> {
    let header = file.get(..24)?;
    if &header[..8] != MAGIC {
        return None;
    }
    let len = u64::from_le_bytes(header[8..16].try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(header[16..24].try_into().ok()?);
    let data = file.get(24..)?;
    (data.len() == len && XxHash3_64::oneshot(data) == sum).then_some(data)
}

impl DiskPipelineCache {
    /// The cache for `device`, seeded from disk when a valid file exists; `None` when the
    /// device lacks the feature, the backend has no cache key, or caching is off.
    pub(crate) fn open(
        device: &wgpu::Device,
        info: &wgpu::AdapterInfo,
    ) -> Option<DiskPipelineCache> {
        if !device.features().contains(wgpu::Features::PIPELINE_CACHE) {
            return None;
        }
        let key = wgpu::util::pipeline_cache_key(info)?;
        let dir = kiln_plan::files::plan_cache_dir_from_env()?.join("pipelines");
        let path = dir.join(format!("{key}.bin"));
        let file = std::fs::read(&path).ok();
        let data = match file.as_deref().map(unwrap) {
            Some(Some(d)) => Some(d),
            Some(None) => {
                log::warn!(
                    "kiln-wgpu: ignoring pipeline cache {} (not a kiln pipeline cache, or corrupt)",
                    path.display()
                );
                None
            }
            None => None,
        };
        let saved = data.map_or(0, XxHash3_64::oneshot);
        // SAFETY: `data` is exactly what an earlier `PipelineCache::get_data` returned for an
        // adapter with the same cache key (the checksum proves the bytes are the ones kiln
        // wrote); with `fallback` an incompatible blob yields an empty cache.
        let _driver = crate::device::driver_lock();
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("kiln pipelines"),
                data,
                fallback: true,
            })
        };
        Some(DiskPipelineCache { cache, path, saved })
    }

    /// Writes the cache's data to disk when it changed (atomically; failures are logged).
    pub(crate) fn save(&mut self) {
        let Some(data) = self.cache.get_data() else {
            return;
        };
        let sum = XxHash3_64::oneshot(&data);
        if sum == self.saved {
            return;
        }
        let written = self
            .path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| kiln_plan::files::write_atomic(&self.path, &wrap(&data)));
        match written {
            Ok(()) => self.saved = sum,
            Err(e) => log::warn!(
                "kiln-wgpu: could not write the pipeline cache {}: {e}",
                self.path.display()
            ),
        }
    }

    /// Where the cache persists.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_rejections() {
        let data = b"driver blob".to_vec();
        let f = wrap(&data);
        assert_eq!(unwrap(&f), Some(&data[..]));
        for cut in [0, 7, 23, 24, f.len() - 1] {
            assert_eq!(unwrap(&f[..cut]), None, "truncated to {cut}");
        }
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x10;
            assert_eq!(unwrap(&g), None, "bit flip at {i}");
        }
    }
}
