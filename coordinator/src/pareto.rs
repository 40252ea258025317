//! Several objectives at once: Pareto fronts, crowding, hypervolume.
//!
//! Every function here minimises each coordinate (callers sign a maximised objective). The
//! leaderboard of a sweep with several objectives ranks by [`order`]: the front a trial is on
//! (1: no other trial is at least as good on every objective and better on one), then its
//! crowding distance within the front (NSGA-II's: the boundary trials and the ones in the
//! emptiest stretch of the front first), then the trial number. The multi-objective TPE ranks
//! its observations by [`model_order`] (the front, then greedy hypervolume subset selection
//! within it, as Optuna's MOTPE splits them).

/// Whether `a` Pareto-dominates `b`: no worse on every coordinate and better on one.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    let mut better = false;
    for (x, y) in a.iter().zip(b) {
        if x > y {
            return false;
        }
        better |= x < y;
    }
    better
}

/// The front of each point, 1-based (1 is the non-dominated set). Efficient non-dominated
/// sorting with sequential search (Zhang et al. 2015): points in lexicographic order, each put
/// on the first front none of whose members dominates it (a later point never dominates an
/// earlier one). Equal points share a front. O(m·n²) at worst, far less on typical sets; with
/// two coordinates O(n log n) always.
pub fn fronts(points: &[Vec<f64>]) -> Vec<u32> {
    let mut idx: Vec<usize> = (0..points.len()).collect();
    idx.sort_by(|&a, &b| {
        points[a]
            .iter()
            .zip(&points[b])
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut out = vec![0u32; points.len()];
    if points.first().is_some_and(|p| p.len() == 2) {
        // Two objectives: a front's newest member has its lowest second coordinate, and a
        // point is dominated by the fronts before its own and by none after: a binary search
        // per point, O(n log n) even when every trial is on a front of its own (two objectives
        // that agree).
        let mut last: Vec<usize> = Vec::new();
        for i in idx {
            let p = &points[i];
            let k = last.partition_point(|&j| {
                let q = &points[j];
                q[1] < p[1] || (q[1] == p[1] && q[0] < p[0])
            });
            if k == last.len() {
                last.push(i);
            } else {
                last[k] = i;
            }
            out[i] = k as u32 + 1;
        }
        return out;
    }
    let mut members: Vec<Vec<usize>> = Vec::new();
    for i in idx {
        // Fronts are searched in order; within one, the newest members first (the most
        // likely to dominate a point that sorts after them).
        let k = members
            .iter()
            .position(|f| !f.iter().rev().any(|&j| dominates(&points[j], &points[i])))
            .unwrap_or(members.len());
        if k == members.len() {
            members.push(Vec::new());
        }
        members[k].push(i);
        out[i] = k as u32 + 1;
    }
    out
}

/// NSGA-II's crowding distance of each of `members` (indexes of points on one front): the sum
/// over coordinates of the gap between its two neighbours, as a fraction of the front's range
/// there; the two ends of each coordinate are infinitely far.
// Coordinate k of every member: an index over coordinates reads clearest.
#[allow(clippy::needless_range_loop)]
pub fn crowding(points: &[Vec<f64>], members: &[usize]) -> Vec<f64> {
    let n = members.len();
    let mut d = vec![0.0; n];
    if n <= 2 {
        return vec![f64::INFINITY; n];
    }
    let m = points[members[0]].len();
    let mut by: Vec<usize> = (0..n).collect();
    for k in 0..m {
        by.sort_by(|&a, &b| points[members[a]][k].total_cmp(&points[members[b]][k]));
        let lo = points[members[by[0]]][k];
        let hi = points[members[by[n - 1]]][k];
        d[by[0]] = f64::INFINITY;
        d[by[n - 1]] = f64::INFINITY;
        let range = hi - lo;
        if range <= 0.0 || !range.is_finite() {
            continue;
        }
        for w in 1..n - 1 {
            let gap = points[members[by[w + 1]]][k] - points[members[by[w - 1]]][k];
            d[by[w]] += gap / range;
        }
    }
    d
}

/// The leaderboard's order of `points`: by front, then crowding distance (largest first),
/// then index (callers list the points in the order that should break ties). Returns (index,
/// front) best first.
pub fn order(points: &[Vec<f64>]) -> Vec<(usize, u32)> {
    let front = fronts(points);
    let mut crowd = vec![0.0; points.len()];
    for members in by_front(&front) {
        for (i, c) in members.iter().zip(crowding(points, &members)) {
            crowd[*i] = c;
        }
    }
    let mut idx: Vec<usize> = (0..points.len()).collect();
    idx.sort_by(|&a, &b| {
        front[a]
            .cmp(&front[b])
            .then(crowd[b].total_cmp(&crowd[a]))
            .then(a.cmp(&b))
    });
    idx.into_iter().map(|i| (i, front[i])).collect()
}

/// Members of each front (front 1 first), indexes ascending.
fn by_front(front: &[u32]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (i, &f) in front.iter().enumerate() {
        let k = f as usize - 1;
        if out.len() <= k {
            out.resize_with(k + 1, Vec::new);
        }
        out[k].push(i);
    }
    out
}

/// The hypervolume `points` dominate up to `reference` (the volume of the region no worse than
/// `reference` that some point dominates). Points not strictly better than the reference on
/// every coordinate add nothing. Exact: a sweep for two coordinates, slicing along the last
/// one above that (O(n^(m−1) log n): meant for a few hundred points).
pub fn hypervolume(points: &[Vec<f64>], reference: &[f64]) -> f64 {
    let inside: Vec<&[f64]> = points
        .iter()
        .map(Vec::as_slice)
        .filter(|p| p.len() == reference.len() && p.iter().zip(reference).all(|(x, r)| x < r))
        .collect();
    hv(&inside, reference)
}

fn hv(points: &[&[f64]], r: &[f64]) -> f64 {
    if points.is_empty() {
        return 0.0;
    }
    let m = r.len();
    if m == 1 {
        return r[0] - points.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
    }
    if m == 2 {
        let mut ps: Vec<&[f64]> = points.to_vec();
        ps.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
        let mut vol = 0.0;
        let mut top = r[1];
        for p in ps {
            if p[1] < top {
                vol += (r[0] - p[0]) * (top - p[1]);
                top = p[1];
            }
        }
        return vol;
    }
    let mut ps: Vec<&[f64]> = points.to_vec();
    ps.sort_by(|a, b| a[m - 1].total_cmp(&b[m - 1]));
    let mut vol = 0.0;
    let mut slice: Vec<&[f64]> = Vec::with_capacity(ps.len());
    for (i, p) in ps.iter().enumerate() {
        slice.push(&p[..m - 1]);
        let next = ps.get(i + 1).map_or(r[m - 1], |q| q[m - 1]);
        let depth = next - p[m - 1];
        if depth > 0.0 {
            vol += depth * hv(&slice, &r[..m - 1]);
        }
    }
    vol
}

/// Most points of a front ordered by greedy hypervolume contribution; the rest follow by
/// crowding distance (what the model takes as "good" is at most a few dozen).
const GREEDY_PICKS: usize = 64;

/// Objectives above which a front is ordered by crowding distance alone (exact hypervolume
/// grows too costly).
const GREEDY_MAX_OBJECTIVES: usize = 3;

/// The order in which a model should see `points` as best to worst: front by front, and
/// within a front by greedy hypervolume subset selection (each next point the one that adds
/// the most hypervolume to those before it; coordinates scaled to [0, 1] over all points,
/// reference 1.1 on each), as multi-objective TPE splits its observations (Ozaki et al. 2020;
/// Optuna's MOTPE). Returns a key per point: front + position within the front / its size, so
/// that sorting by it gives that order and any prefix is the best subset of its size.
pub fn model_order(points: &[Vec<f64>]) -> Vec<f64> {
    if points.is_empty() {
        return Vec::new();
    }
    let m = points[0].len();
    let scaled = scaled(points);
    let front = fronts(&scaled);
    let reference = vec![1.1; m];
    let mut key = vec![0.0; points.len()];
    for (f, members) in by_front(&front).iter().enumerate() {
        let within = if m <= GREEDY_MAX_OBJECTIVES {
            greedy(&scaled, members, &reference)
        } else {
            by_crowding(&scaled, members)
        };
        let size = members.len() as f64;
        for (pos, i) in within.into_iter().enumerate() {
            key[i] = (f + 1) as f64 + pos as f64 / size;
        }
    }
    key
}

/// `points` with each coordinate scaled to [0, 1] over them (0 where they all agree).
pub fn scaled(points: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let m = points.first().map_or(0, Vec::len);
    let (lo, hi): (Vec<f64>, Vec<f64>) = (0..m)
        .map(|k| {
            points
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                    (a.min(p[k]), b.max(p[k]))
                })
        })
        .unzip();
    points
        .iter()
        .map(|p| {
            (0..m)
                .map(|k| {
                    let range = hi[k] - lo[k];
                    if range > 0.0 {
                        (p[k] - lo[k]) / range
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect()
}

/// `members` by crowding distance, largest first.
fn by_crowding(points: &[Vec<f64>], members: &[usize]) -> Vec<usize> {
    let c = crowding(points, members);
    let mut pos: Vec<usize> = (0..members.len()).collect();
    pos.sort_by(|&a, &b| c[b].total_cmp(&c[a]).then(a.cmp(&b)));
    pos.into_iter().map(|p| members[p]).collect()
}

/// Greedy hypervolume subset selection over `members` (up to [`GREEDY_PICKS`] picks), the rest
/// by crowding distance.
fn greedy(points: &[Vec<f64>], members: &[usize], reference: &[f64]) -> Vec<usize> {
    let mut left: Vec<usize> = members.to_vec();
    let mut chosen: Vec<usize> = Vec::new();
    let mut base = 0.0;
    while !left.is_empty() && chosen.len() < GREEDY_PICKS {
        let mut best = (f64::NEG_INFINITY, 0);
        for (k, &i) in left.iter().enumerate() {
            let mut set: Vec<&[f64]> = chosen.iter().map(|&j| points[j].as_slice()).collect();
            set.push(&points[i]);
            let gain = hv(&set, reference) - base;
            if gain > best.0 {
                best = (gain, k);
            }
        }
        let i = left.remove(best.1);
        base += best.0;
        chosen.push(i);
    }
    if !left.is_empty() {
        chosen.extend(by_crowding(points, &left));
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn naive_fronts(points: &[Vec<f64>]) -> Vec<u32> {
        let mut out = vec![0u32; points.len()];
        let mut left: Vec<usize> = (0..points.len()).collect();
        let mut f = 1;
        while !left.is_empty() {
            let now: Vec<usize> = left
                .iter()
                .copied()
                .filter(|&i| !left.iter().any(|&j| dominates(&points[j], &points[i])))
                .collect();
            for &i in &now {
                out[i] = f;
            }
            left.retain(|i| !now.contains(i));
            f += 1;
        }
        out
    }

    #[test]
    fn fronts_match_peeling_the_non_dominated_set_by_hand() {
        let p = vec![
            vec![1.0, 5.0],
            vec![2.0, 3.0],
            vec![3.0, 4.0], // dominated by (2, 3)
            vec![4.0, 1.0],
            vec![2.0, 3.0], // equal to a front-1 point: front 1 too
            vec![5.0, 5.0], // dominated by (3, 4): front 3
        ];
        assert_eq!(fronts(&p), vec![1, 1, 2, 1, 1, 3]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for m in 2..=4 {
            for _ in 0..20 {
                // Coarse values, so that ties and duplicates are common.
                let p: Vec<Vec<f64>> = (0..60)
                    .map(|_| (0..m).map(|_| rng.random_range(0..6) as f64).collect())
                    .collect();
                assert_eq!(fronts(&p), naive_fronts(&p), "{p:?}");
            }
        }
    }

    #[test]
    fn two_objectives_that_agree_are_sorted_fast() {
        // Every point dominates the next: 200,000 fronts of one (quadratic for a naive sort).
        let p: Vec<Vec<f64>> = (0..200_000)
            .map(|i| vec![i as f64, 2.0 * i as f64])
            .collect();
        let f = fronts(&p);
        assert!(f.iter().enumerate().all(|(i, &k)| k == i as u32 + 1));
    }

    #[test]
    fn crowding_puts_the_ends_first_then_the_loneliest() {
        let p = vec![
            vec![0.0, 4.0],
            vec![1.0, 3.0],
            vec![1.2, 2.8],
            vec![3.0, 1.0],
            vec![4.0, 0.0],
        ];
        let o: Vec<usize> = order(&p).into_iter().map(|x| x.0).collect();
        // Ends (0 and 4) first, then 3 (alone between 2 and 4), then 1 and 2 (crowded).
        assert_eq!(&o[..2], &[0, 4]);
        assert_eq!(o[2], 3);
    }

    #[test]
    fn hypervolume_of_boxes_computed_by_hand() {
        // Two points in 2-D: union of [1,3]x[2,3] and [2,3]x[1,3] = 2 + 2 - 1 = 3.
        let hv2 = hypervolume(&[vec![1.0, 2.0], vec![2.0, 1.0]], &[3.0, 3.0]);
        assert!((hv2 - 3.0).abs() < 1e-12, "{hv2}");
        // A point outside the reference adds nothing.
        assert_eq!(hypervolume(&[vec![4.0, 0.0]], &[3.0, 3.0]), 0.0);
        // 3-D: (0,0,1) and (1,1,0) against (2,2,2): 2·2·1 + 1·1·2 − overlap 1·1·1 = 5.
        let hv3 = hypervolume(
            &[vec![0.0, 0.0, 1.0], vec![1.0, 1.0, 0.0]],
            &[2.0, 2.0, 2.0],
        );
        assert!((hv3 - 5.0).abs() < 1e-12, "{hv3}");
        // Monte Carlo check in 3-D on random points.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let p: Vec<Vec<f64>> = (0..12)
            .map(|_| (0..3).map(|_| rng.random::<f64>()).collect())
            .collect();
        let exact = hypervolume(&p, &[1.0, 1.0, 1.0]);
        let n = 200_000;
        let hits = (0..n)
            .filter(|_| {
                let z: Vec<f64> = (0..3).map(|_| rng.random::<f64>()).collect();
                p.iter().any(|q| q.iter().zip(&z).all(|(a, b)| a <= b))
            })
            .count();
        let mc = hits as f64 / n as f64;
        assert!((exact - mc).abs() < 0.01, "exact {exact}, Monte Carlo {mc}");
    }

    #[test]
    fn the_models_order_is_front_first_and_a_prefix_keeps_the_front_spread() {
        // Front 1: five points along a line; one dominated point.
        let p = vec![
            vec![0.0, 1.0],
            vec![0.25, 0.75],
            vec![0.5, 0.5],
            vec![0.75, 0.25],
            vec![1.0, 0.0],
            vec![0.9, 0.9],
        ];
        let k = model_order(&p);
        assert!(
            k[5] >= 2.0 && k[..5].iter().all(|&x| (1.0..2.0).contains(&x)),
            "{k:?}"
        );
        // Hypervolume gains against (1.1, 1.1): the middle point gains most first.
        let first = (0..5).min_by(|&a, &b| k[a].total_cmp(&k[b])).unwrap();
        assert_eq!(first, 2, "{k:?}");
    }
}
