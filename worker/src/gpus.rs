//! The GPUs a worker has to hand to trials (`worker --gpus auto|none|0,1,3`).
//!
//! `auto` asks the NVIDIA driver through `nvidia-smi` (`SWEEP_NVIDIA_SMI` names another
//! program: tests give a fake one) for each GPU's index, UUID, name and memory, and for the
//! MIG devices it is split into (`nvidia-smi -L`): a GPU in MIG mode is its MIG devices, each
//! a GPU of its own to a trial (named by its `MIG-…` UUID, as CUDA wants). Where the worker was
//! started with `CUDA_VISIBLE_DEVICES` already set (by Slurm's `--gres`, Kubernetes' device
//! plugin, or by hand), its GPUs are exactly those entries, in that order, each passed on as
//! written. No driver, no `nvidia-smi`, or `CUDA_VISIBLE_DEVICES` empty: no GPUs. An explicit
//! list names GPUs by index or UUID; each must be one the driver lists (without `nvidia-smi`
//! the list is trusted, with unknown names).

use std::process::Command;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Most GPUs a worker registers (a node has 8 or 16; MIG splits an A100 into at most 7).
pub const MAX_GPUS: usize = 64;

/// Longest id, UUID or name of a GPU a worker registers.
pub const MAX_GPU_TEXT: usize = 128;

/// One GPU (or MIG device) a trial can be given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Gpu {
    /// What `CUDA_VISIBLE_DEVICES` gets for it: the index, a UUID, or the entry as the
    /// environment gave it.
    pub id: String,
    /// The driver's index (of the parent GPU for a MIG device).
    pub index: u32,
    /// `GPU-…` or `MIG-…`; empty when unknown.
    pub uuid: String,
    /// Product name (a MIG device's profile appended); empty when unknown.
    pub name: String,
    /// Total memory in MiB (0 when unknown, or for a MIG device).
    pub memory_mb: u64,
}

/// What `--gpus` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// What the driver reports, narrowed by `CUDA_VISIBLE_DEVICES`.
    Auto,
    /// None.
    None,
    /// These, by index or UUID.
    List(Vec<String>),
}

impl std::str::FromStr for Choice {
    type Err = String;

    fn from_str(s: &str) -> Result<Choice, String> {
        match s.trim() {
            "auto" => Ok(Choice::Auto),
            "none" | "" => Ok(Choice::None),
            list => {
                let ids: Vec<String> = list.split(',').map(|x| x.trim().to_string()).collect();
                if let Some(bad) = ids.iter().find(|x| {
                    x.is_empty()
                        || *x == "auto"
                        || *x == "none"
                        || x.len() > MAX_GPU_TEXT
                        || !x.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                }) {
                    return Err(format!(
                        "expected auto, none, or GPU indices or UUIDs separated by commas (e.g. 0,1,3), got {bad:?} in {s:?}"
                    ));
                }
                if ids.len() > MAX_GPUS {
                    return Err(format!("at most {MAX_GPUS} GPUs, got {}", ids.len()));
                }
                if let Some((i, _)) = ids.iter().enumerate().find(|(i, x)| ids[..*i].contains(x)) {
                    return Err(format!("GPU {:?} is named twice in {s:?}", ids[i]));
                }
                Ok(Choice::List(ids))
            }
        }
    }
}

/// The GPUs `choice` gives, from the driver's inventory (`Err`: why there is none) and the
/// `CUDA_VISIBLE_DEVICES` the worker was started with.
pub fn resolve(
    choice: &Choice,
    inventory: Result<Vec<Gpu>, String>,
    cuda_visible: Option<&str>,
) -> Result<Vec<Gpu>, String> {
    let find = |inv: &[Gpu], id: &str| {
        inv.iter()
            .find(|g| g.id == id || (!g.uuid.is_empty() && g.uuid == id))
            .cloned()
    };
    let unknown = |id: &str| Gpu {
        id: id.to_string(),
        index: id.parse().unwrap_or(0),
        ..Gpu::default()
    };
    let gpus = match choice {
        Choice::None => Vec::new(),
        Choice::List(ids) => match &inventory {
            Ok(inv) => ids
                .iter()
                .map(|id| {
                    let g = find(inv, id).ok_or_else(|| {
                        let listed: Vec<&str> = inv.iter().map(|g| g.id.as_str()).collect();
                        format!(
                            "--gpus: no GPU {id:?}; the driver lists {}",
                            if listed.is_empty() {
                                "none".to_string()
                            } else {
                                listed.join(", ")
                            }
                        )
                    })?;
                    // An index and a UUID of the same GPU.
                    match ids.iter().find(|other| {
                        *other != id && find(inv, other).is_some_and(|o| o.id == g.id)
                    }) {
                        Some(other) => Err(format!("--gpus: {id} and {other} are the same GPU")),
                        None => Ok(g),
                    }
                })
                .collect::<Result<_, _>>()?,
            Err(why) => {
                tracing::warn!("--gpus: {why}; using the GPUs named as they are");
                ids.iter().map(|id| unknown(id)).collect()
            }
        },
        Choice::Auto => {
            let inv = inventory.unwrap_or_else(|why| {
                tracing::info!("no GPUs: {why}");
                Vec::new()
            });
            match cuda_visible {
                None => inv,
                Some(v) => {
                    let v = v.trim();
                    if v.is_empty() || v == "-1" || v.eq_ignore_ascii_case("NoDevFiles") {
                        Vec::new()
                    } else {
                        let mut seen = Vec::new();
                        v.split(',')
                            .map(str::trim)
                            .filter(|x| !x.is_empty())
                            // An entry written twice is one GPU.
                            .filter(|x| {
                                let new = !seen.contains(x);
                                seen.push(*x);
                                new
                            })
                            .map(|id| {
                                let mut g = find(&inv, id).unwrap_or_else(|| unknown(id));
                                g.id = id.to_string();
                                g
                            })
                            .collect()
                    }
                }
            }
        }
    };
    Ok(gpus.into_iter().take(MAX_GPUS).collect())
}

/// The driver's GPUs, from `nvidia-smi` (or the program `SWEEP_NVIDIA_SMI` names).
pub fn inventory() -> Result<Vec<Gpu>, String> {
    let program = std::env::var("SWEEP_NVIDIA_SMI").unwrap_or_else(|_| "nvidia-smi".into());
    let run = |args: &[&str]| -> Result<String, String> {
        let out = Command::new(&program)
            .args(args)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{program} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let gpus = parse_query(&run(&[
        "--query-gpu=index,uuid,name,memory.total",
        "--format=csv,noheader,nounits",
    ])?);
    // MIG devices, when there are any (an old driver without -L's MIG lines lists none).
    let migs = run(&["-L"]).map(|l| parse_list(&l)).unwrap_or_default();
    Ok(with_migs(gpus, &migs))
}

/// `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits` lines.
pub fn parse_query(csv: &str) -> Vec<Gpu> {
    csv.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let [index, uuid, name, memory] = f[..] else {
                return None;
            };
            let index: u32 = index.parse().ok()?;
            Some(Gpu {
                id: index.to_string(),
                index,
                uuid: clip(uuid),
                name: clip(name),
                memory_mb: memory.parse().unwrap_or(0),
            })
        })
        .take(MAX_GPUS)
        .collect()
}

/// The MIG devices in `nvidia-smi -L` output: (parent index, UUID, profile).
pub fn parse_list(list: &str) -> Vec<(u32, String, String)> {
    let mut parent = None;
    let mut out = Vec::new();
    for line in list.lines() {
        let t = line.trim();
        let uuid = t
            .rsplit_once("(UUID: ")
            .and_then(|(_, u)| u.strip_suffix(')'))
            .map(str::trim);
        if let Some(rest) = t.strip_prefix("GPU ") {
            parent = rest.split(':').next().and_then(|i| i.trim().parse().ok());
        } else if let (Some(rest), Some(p), Some(uuid)) = (t.strip_prefix("MIG "), parent, uuid) {
            let profile = rest.split_whitespace().next().unwrap_or("");
            out.push((p, clip(uuid), clip(profile)));
        }
    }
    out
}

/// `gpus` with each GPU that has MIG devices replaced by them.
fn with_migs(gpus: Vec<Gpu>, migs: &[(u32, String, String)]) -> Vec<Gpu> {
    gpus.into_iter()
        .flat_map(|g| {
            let mine: Vec<Gpu> = migs
                .iter()
                .filter(|m| m.0 == g.index)
                .map(|(_, uuid, profile)| Gpu {
                    id: uuid.clone(),
                    index: g.index,
                    uuid: uuid.clone(),
                    name: clip(&format!("{} MIG {profile}", g.name)),
                    memory_mb: 0,
                })
                .collect();
            if mine.is_empty() {
                vec![g]
            } else {
                mine
            }
        })
        .take(MAX_GPUS)
        .collect()
}

/// How often a running trial's GPUs are sampled (W&B's system metrics: every 15 s, averaged
/// over samples every 2 s).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// How long a trial's start waits for the first sample.
const FIRST_SAMPLE_WAIT: Duration = Duration::from_secs(2);

/// Utilisation (%) and memory used (MiB) of a trial's GPUs, sampled with `nvidia-smi` on a
/// thread of its own while the trial runs; named as W&B's system metrics number a run's GPUs,
/// from 0 in the order the trial sees them: `gpu.0.util`, `gpu.0.memory_mb`. Stops when
/// dropped. MIG devices are not sampled (the driver gives no utilisation for them).
#[derive(Debug)]
pub struct Sampler {
    latest: Arc<Mutex<Vec<(String, f64)>>>,
    _stop: mpsc::Sender<()>,
}

impl Sampler {
    /// Starts sampling `gpus` every `every`, having waited a little for the first sample;
    /// `None` when none of them can be sampled.
    pub fn start(gpus: &[Gpu], every: Duration) -> Option<Sampler> {
        if !gpus.iter().any(|g| !g.uuid.starts_with("MIG-")) {
            return None;
        }
        let latest = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = mpsc::channel::<()>();
        let (first_tx, first) = mpsc::channel::<()>();
        let (gpus, out) = (gpus.to_vec(), latest.clone());
        std::thread::Builder::new()
            .name("gpu-sampler".into())
            .spawn(move || loop {
                if let Some(values) = sample(&gpus) {
                    *out.lock().unwrap_or_else(|p| p.into_inner()) = values;
                }
                let _ = first_tx.send(());
                if !matches!(
                    stopped.recv_timeout(every),
                    Err(mpsc::RecvTimeoutError::Timeout)
                ) {
                    return;
                }
            })
            .ok()?;
        let _ = first.recv_timeout(FIRST_SAMPLE_WAIT);
        Some(Sampler {
            latest,
            _stop: stop,
        })
    }

    /// The last sample's values by name.
    pub fn latest(&self) -> Vec<(String, f64)> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One sample of `gpus` from the driver.
fn sample(gpus: &[Gpu]) -> Option<Vec<(String, f64)>> {
    let program = std::env::var("SWEEP_NVIDIA_SMI").unwrap_or_else(|_| "nvidia-smi".into());
    let out = Command::new(program)
        .args([
            "--query-gpu=index,uuid,utilization.gpu,memory.used",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(parse_sample(&String::from_utf8_lossy(&out.stdout), gpus))
}

/// `nvidia-smi --query-gpu=index,uuid,utilization.gpu,memory.used` lines as the metrics of
/// `gpus` (matched by UUID, else by index; values the driver does not give are left out).
pub fn parse_sample(csv: &str, gpus: &[Gpu]) -> Vec<(String, f64)> {
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .map(|l| l.split(',').map(str::trim).collect::<Vec<_>>())
        .filter(|f| f.len() == 4)
        .collect();
    let mut out = Vec::new();
    for (i, g) in gpus.iter().enumerate() {
        if g.uuid.starts_with("MIG-") {
            continue;
        }
        let row = rows.iter().find(|f| {
            if g.uuid.is_empty() {
                f[0].parse() == Ok(g.index)
            } else {
                f[1] == g.uuid
            }
        });
        let Some(f) = row else { continue };
        for (name, text) in [("util", f[2]), ("memory_mb", f[3])] {
            if let Ok(v) = text.parse::<f64>() {
                out.push((format!("gpu.{i}.{name}"), v));
            }
        }
    }
    out
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_GPU_TEXT).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUERY: &str = "0, GPU-aaaa-0001, NVIDIA H100 80GB HBM3, 81559\n1, GPU-aaaa-0002, NVIDIA H100 80GB HBM3, 81559\n";
    const LIST: &str = "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbb-0000)\n  MIG 3g.20gb     Device  0: (UUID: MIG-cccc-0001)\n  MIG 3g.20gb     Device  1: (UUID: MIG-cccc-0002)\nGPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbb-0001)\n";

    #[test]
    fn a_trials_gpus_are_sampled_by_uuid_or_index_and_numbered_as_it_sees_them() {
        let csv = "0, GPU-a, 12, 1000\n1, GPU-b, 87, 30500\n2, GPU-c, [N/A], 5\n";
        let gpu = |index: u32, uuid: &str| Gpu {
            id: index.to_string(),
            index,
            uuid: uuid.into(),
            ..Gpu::default()
        };
        // The trial's first GPU is the driver's 1, its second the driver's 2 (known by index
        // only); a MIG device is skipped; a value the driver does not give is left out.
        let got = parse_sample(
            csv,
            &[
                gpu(1, "GPU-b"),
                gpu(2, ""),
                gpu(0, "MIG-x"),
                gpu(7, "GPU-z"),
            ],
        );
        assert_eq!(
            got,
            [
                ("gpu.0.util".to_string(), 87.0),
                ("gpu.0.memory_mb".into(), 30500.0),
                ("gpu.1.memory_mb".into(), 5.0),
            ]
        );
        assert!(Sampler::start(&[gpu(0, "MIG-x")], SAMPLE_EVERY).is_none());
    }

    #[test]
    fn the_drivers_gpus_are_read_with_index_uuid_name_and_memory() {
        let g = parse_query(QUERY);
        assert_eq!(g.len(), 2);
        assert_eq!(
            g[1],
            Gpu {
                id: "1".into(),
                index: 1,
                uuid: "GPU-aaaa-0002".into(),
                name: "NVIDIA H100 80GB HBM3".into(),
                memory_mb: 81559,
            }
        );
        assert!(parse_query("garbage\n\n").is_empty());
    }

    #[test]
    fn a_gpu_in_mig_mode_is_its_mig_devices() {
        let gpus = parse_query(
            "0, GPU-bbbb-0000, NVIDIA A100-SXM4-40GB, 40960\n1, GPU-bbbb-0001, NVIDIA A100-SXM4-40GB, 40960\n",
        );
        let migs = parse_list(LIST);
        assert_eq!(
            migs,
            [
                (0, "MIG-cccc-0001".into(), "3g.20gb".into()),
                (0, "MIG-cccc-0002".into(), "3g.20gb".into())
            ]
        );
        let all = with_migs(gpus, &migs);
        let ids: Vec<&str> = all.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(ids, ["MIG-cccc-0001", "MIG-cccc-0002", "1"]);
        assert_eq!(all[0].name, "NVIDIA A100-SXM4-40GB MIG 3g.20gb");
    }

    #[test]
    fn cuda_visible_devices_already_set_is_respected() {
        let inv = || Ok(parse_query(QUERY));
        let auto = |v: Option<&str>| resolve(&Choice::Auto, inv(), v).unwrap();
        assert_eq!(auto(None).len(), 2);
        // Slurm's --gres=gpu:1 on the second GPU, by index or by UUID.
        let g = auto(Some("1"));
        assert_eq!(
            (g.len(), g[0].id.as_str(), g[0].uuid.as_str()),
            (1, "1", "GPU-aaaa-0002")
        );
        let g = auto(Some("GPU-aaaa-0002"));
        assert_eq!((g[0].id.as_str(), g[0].index), ("GPU-aaaa-0002", 1));
        // An entry the driver does not list is kept as written (a container may renumber).
        let g = auto(Some("7"));
        assert_eq!((g[0].id.as_str(), g[0].name.as_str()), ("7", ""));
        for none in ["", "-1", "NoDevFiles"] {
            assert!(auto(Some(none)).is_empty(), "{none:?}");
        }
        // No driver: no GPUs.
        assert!(resolve(&Choice::Auto, Err("no nvidia-smi".into()), None)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_list_names_gpus_the_driver_has() {
        let inv = || Ok(parse_query(QUERY));
        let list = |s: &str| s.parse::<Choice>().unwrap();
        let g = resolve(&list("1,0"), inv(), None).unwrap();
        assert_eq!(g.iter().map(|g| g.index).collect::<Vec<_>>(), [1, 0]);
        let err = resolve(&list("0,3"), inv(), None).unwrap_err();
        assert!(
            err.contains("no GPU \"3\"") && err.contains("0, 1"),
            "{err}"
        );
        // Without nvidia-smi the list is taken as it is.
        let g = resolve(&list("0,1"), Err("none".into()), None).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(resolve(&Choice::None, inv(), Some("0")).unwrap(), []);
        for bad in ["0,,1", "0;rm", "auto,0"] {
            assert!(bad.parse::<Choice>().is_err(), "{bad}");
        }
        assert_eq!("none".parse::<Choice>().unwrap(), Choice::None);
        // A GPU named twice, or by its index and its UUID, would go to two trials at once.
        let err = "0,1,0".parse::<Choice>().unwrap_err();
        assert!(err.contains("GPU \"0\" is named twice"), "{err}");
        let err = resolve(&list("0,GPU-aaaa-0001"), inv(), None).unwrap_err();
        assert_eq!(err, "--gpus: 0 and GPU-aaaa-0001 are the same GPU");
        // Written twice in CUDA_VISIBLE_DEVICES: one GPU.
        let g = resolve(&Choice::Auto, inv(), Some("1,1,0")).unwrap();
        assert_eq!(
            g.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
            ["1", "0"]
        );
    }
}
