//! The leases held now, and the GPUs each worker's attempts hold: a lease id names its trial
//! (heartbeats find it by it) and the GPUs it runs with, so that a worker's GPUs go to one
//! attempt at a time. A lease that needs GPUs first *claims* them (under a key of its own,
//! while its trial is chosen or its suggestion computed); the lease takes them over, and holds
//! them under its id until it ends; whatever ends a lease frees its GPUs with it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::GpuInfo;

/// What one lease (or claim) holds.
#[derive(Debug, Clone)]
struct Holding {
    sweep: String,
    trial: u64,
    worker: Arc<str>,
    gpus: Box<[Box<str>]>,
}

/// Every lease held, by id, and the GPUs in use on each worker.
#[derive(Debug, Default)]
pub(super) struct Held {
    by_id: HashMap<String, Holding>,
    /// Worker → ids of its GPUs some lease or claim holds.
    busy: HashMap<Arc<str>, HashSet<Box<str>>>,
}

impl Held {
    /// Records lease `id` of `trial` in `sweep`, run by `worker` with `gpus`.
    pub(super) fn insert(
        &mut self,
        id: String,
        sweep: String,
        trial: u64,
        worker: &str,
        gpus: Vec<Box<str>>,
    ) {
        let worker: Arc<str> = Arc::from(worker);
        if !gpus.is_empty() {
            self.busy
                .entry(worker.clone())
                .or_default()
                .extend(gpus.iter().cloned());
        }
        let old = self.by_id.insert(
            id,
            Holding {
                sweep,
                trial,
                worker,
                gpus: gpus.into_boxed_slice(),
            },
        );
        if let Some(old) = old {
            self.free(&old);
        }
    }

    /// Ends lease (or claim) `id`, freeing its GPUs; nothing if it is not held.
    pub(super) fn remove(&mut self, id: &str) {
        if let Some(h) = self.by_id.remove(id) {
            self.free(&h);
        }
    }

    /// The sweep and trial lease `id` holds.
    pub(super) fn get(&self, id: &str) -> Option<(String, u64)> {
        self.by_id.get(id).map(|h| (h.sweep.clone(), h.trial))
    }

    /// Claims `n` of `registered` (the worker's GPUs, in its order) that nothing holds on
    /// `worker`, under key `claim`: the first free ones. `None` (and nothing claimed) when
    /// fewer than `n` are free.
    pub(super) fn claim(
        &mut self,
        claim: &str,
        worker: &str,
        registered: &[GpuInfo],
        n: u32,
    ) -> Option<Vec<Box<str>>> {
        let busy = self.busy.get(worker);
        let free: Vec<Box<str>> = registered
            .iter()
            .filter(|g| busy.is_none_or(|b| !b.contains(g.id.as_str())))
            .take(n as usize)
            .map(|g| Box::from(g.id.as_str()))
            .collect();
        if free.len() < n as usize {
            return None;
        }
        self.insert(claim.to_string(), String::new(), 0, worker, free.clone());
        Some(free)
    }

    /// GPUs some lease or claim holds, over every worker.
    pub(super) fn gpus_in_use(&self) -> usize {
        self.busy.values().map(HashSet::len).sum()
    }

    fn free(&mut self, h: &Holding) {
        if h.gpus.is_empty() {
            return;
        }
        if let Some(b) = self.busy.get_mut(&h.worker) {
            for g in &h.gpus {
                b.remove(g);
            }
            if b.is_empty() {
                self.busy.remove(&h.worker);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpus(ids: &[&str]) -> Vec<GpuInfo> {
        ids.iter()
            .map(|id| GpuInfo {
                id: id.to_string(),
                ..GpuInfo::default()
            })
            .collect()
    }

    #[test]
    fn a_workers_gpus_go_to_one_lease_at_a_time_and_come_back_when_it_ends() {
        let reg = gpus(&["0", "1", "2"]);
        let mut h = Held::default();
        assert_eq!(
            h.claim("c1", "w", &reg, 2).unwrap(),
            [Box::from("0"), "1".into()]
        );
        // One left: a second two-GPU claim fails and claims nothing.
        assert!(h.claim("c2", "w", &reg, 2).is_none());
        assert_eq!(h.gpus_in_use(), 2);
        // Another worker's GPUs are its own.
        assert_eq!(h.claim("c3", "v", &reg, 3).unwrap().len(), 3);
        // The lease takes the claim's GPUs over.
        h.remove("c1");
        h.insert(
            "L1".into(),
            "s".into(),
            4,
            "w",
            vec!["0".into(), "1".into()],
        );
        assert_eq!(h.get("L1"), Some(("s".to_string(), 4)));
        assert_eq!(h.get("c1"), None);
        assert_eq!(h.claim("c4", "w", &reg, 1).unwrap(), [Box::from("2")]);
        // A dropped claim frees its GPUs; the lease frees its own when it ends.
        h.remove("c4");
        h.remove("L1");
        assert_eq!(h.gpus_in_use(), 3);
        assert_eq!(h.claim("c5", "w", &reg, 3).unwrap().len(), 3);
        // Leases without GPUs hold none.
        h.insert("L3".into(), "s".into(), 6, "w", Vec::new());
        h.remove("L3");
        assert_eq!(h.gpus_in_use(), 6);
    }
}
