//! `--source nezha:PATH[:DAY]`, `smd:PATH[:MACHINE]`, `nab:PATH[:CATEGORY/FILE.csv]`: the shared
//! data sets as sources, so any of them replays through the same pipeline.

use anyhow::{Result, bail};
use auspex_ingest::{NabConfig, NabSource, NezhaConfig, NezhaSource, SmdConfig, SmdSource, Source};

/// Opens a data-set source; `rest` is `PATH` or `PATH:SELECTION`.
pub fn open(scheme: &str, rest: &str) -> Result<Box<dyn Source>> {
    let (path, pick) = match rest.rsplit_once(':') {
        Some((p, s)) if !s.is_empty() => (p, Some(s)),
        _ => (rest, None),
    };
    if path.is_empty() {
        bail!("{scheme}: missing the data set's path");
    }
    Ok(match scheme {
        "nezha" => {
            let mut c = NezhaConfig::new(path);
            if let Some(day) = pick {
                c = c.days([day]);
            }
            Box::new(NezhaSource::new(c)?)
        }
        "smd" => {
            let mut c = SmdConfig::new(path);
            if let Some(m) = pick {
                c = c.machines([m]);
            }
            Box::new(SmdSource::new(c)?)
        }
        "nab" => {
            let mut c = NabConfig::new(path);
            if let Some(f) = pick {
                c = c.files([f]);
            }
            Box::new(NabSource::new(c)?)
        }
        _ => {
            bail!("unknown source scheme {scheme:?} (expected sim, dir, ndjson, nezha, smd or nab)")
        }
    })
}
