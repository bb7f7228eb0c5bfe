//! Mesh clean-up and analysis: welding, degenerate/unreferenced removal and
//! connected components.
use rayon::prelude::*;
use std::collections::HashMap;

fn sub(a: [f32; 3], b: [f32; 3]) -> [f64; 3] {
    [
        (a[0] - b[0]) as f64,
        (a[1] - b[1]) as f64,
        (a[2] - b[2]) as f64,
    ]
}
fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

/// Merges vertices closer than `eps` (Euclidean; `eps = 0` merges exact duplicates). Each cluster is
/// represented by its first vertex (in index order), whose position is kept. Returns
/// (old → new index map, new vertex count). Greedy: a vertex joins the first representative within eps.
pub fn weld(vertices: &[[f32; 3]], eps: f32) -> (Vec<u32>, usize) {
    let mut remap = vec![0u32; vertices.len()];
    let mut reps: Vec<u32> = Vec::new();
    if eps <= 0.0 {
        let mut map: HashMap<[u32; 3], u32> = HashMap::with_capacity(vertices.len());
        for (i, v) in vertices.iter().enumerate() {
            // +0.0 and −0.0 are the same point.
            let k = v.map(|x| if x == 0.0 { 0 } else { x.to_bits() });
            let n = reps.len() as u32;
            let id = *map.entry(k).or_insert_with(|| {
                reps.push(i as u32);
                n
            });
            remap[i] = id;
        }
        return (remap, reps.len());
    }
    let cell = |v: [f32; 3]| v.map(|x| (x as f64 / eps as f64).floor() as i64);
    let mut grid: HashMap<[i64; 3], Vec<u32>> = HashMap::with_capacity(vertices.len());
    let e2 = (eps as f64) * (eps as f64);
    for (i, &v) in vertices.iter().enumerate() {
        let c = cell(v);
        let mut found = None;
        'search: for dx in -1..=1 {
            for dy in -1..=1 {
                for dz in -1..=1 {
                    if let Some(list) = grid.get(&[c[0] + dx, c[1] + dy, c[2] + dz]) {
                        for &r in list {
                            let d = sub(vertices[reps[r as usize] as usize], v);
                            if dot(d, d) <= e2 {
                                found = Some(r);
                                break 'search;
                            }
                        }
                    }
                }
            }
        }
        remap[i] = match found {
            Some(r) => r,
            None => {
                let r = reps.len() as u32;
                reps.push(i as u32);
                grid.entry(c).or_default().push(r);
                r
            }
        };
    }
    (remap, reps.len())
}

/// Faces to keep: not degenerate, i.e. three distinct indices and area > `area_eps`.
pub fn nondegenerate(vertices: &[[f32; 3]], faces: &[[u32; 3]], area_eps: f64) -> Vec<bool> {
    faces
        .par_iter()
        .map(|f| {
            if f[0] == f[1] || f[1] == f[2] || f[0] == f[2] {
                return false;
            }
            let [a, b, c] = f.map(|i| vertices[i as usize]);
            0.5 * norm(cross(sub(b, a), sub(c, a))) > area_eps
        })
        .collect()
}

/// Maps referenced vertices to 0..n in index order; unreferenced ones to −1. Returns (map, n).
pub fn compact(num_vertices: usize, faces: &[[u32; 3]]) -> (Vec<i64>, usize) {
    let mut used = vec![false; num_vertices];
    for f in faces {
        for &i in f {
            used[i as usize] = true;
        }
    }
    let mut map = vec![-1i64; num_vertices];
    let mut n = 0;
    for (i, u) in used.iter().enumerate() {
        if *u {
            map[i] = n as i64;
            n += 1;
        }
    }
    (map, n)
}

fn find(p: &mut [u32], mut x: u32) -> u32 {
    while p[x as usize] != x {
        p[x as usize] = p[p[x as usize] as usize];
        x = p[x as usize];
    }
    x
}

/// Connected components of faces sharing a vertex. Returns a label per face; labels are numbered by
/// decreasing face count (0 = largest; ties by first face), and the face count of each label.
pub fn connected_components(num_vertices: usize, faces: &[[u32; 3]]) -> (Vec<i64>, Vec<i64>) {
    let mut parent: Vec<u32> = (0..num_vertices as u32).collect();
    for f in faces {
        let a = find(&mut parent, f[0]);
        for &v in &f[1..] {
            let b = find(&mut parent, v);
            if a != b {
                parent[b as usize] = a;
            }
        }
    }
    let mut root_label: HashMap<u32, usize> = HashMap::new();
    let mut first_face: Vec<usize> = Vec::new();
    let mut counts: Vec<i64> = Vec::new();
    let raw: Vec<usize> = faces
        .iter()
        .enumerate()
        .map(|(fi, f)| {
            let r = find(&mut parent, f[0]);
            let n = root_label.len();
            let l = *root_label.entry(r).or_insert(n);
            if l == counts.len() {
                counts.push(0);
                first_face.push(fi);
            }
            counts[l] += 1;
            l
        })
        .collect();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by_key(|&l| (-counts[l], first_face[l]));
    let mut rank = vec![0i64; counts.len()];
    for (r, &l) in order.iter().enumerate() {
        rank[l] = r as i64;
    }
    let labels = raw.iter().map(|&l| rank[l]).collect();
    let sizes = order.iter().map(|&l| counts[l]).collect();
    (labels, sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weld_merges_close_vertices_only() {
        let v = [
            [0.0, 0.0, 0.0],
            [1e-7, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [1.0, 1e-3, 0.0],
            [-0.0, 0.0, 0.0],
        ];
        let (m, n) = weld(&v, 1e-5);
        assert_eq!((m, n), (vec![0, 0, 1, 2, 0], 3));
        let (m, n) = weld(&v, 0.0);
        assert_eq!((m, n), (vec![0, 1, 2, 3, 0], 4));
    }

    #[test]
    fn components_are_ranked_by_size() {
        let f = [[0, 1, 2], [3, 4, 5], [4, 5, 6], [2, 1, 7]];
        let (l, s) = connected_components(8, &f);
        assert_eq!(s, vec![2, 2]);
        assert_eq!(l, vec![0, 1, 1, 0]);
    }

    #[test]
    fn degenerate_and_unreferenced() {
        let v = [
            [0., 0., 0.],
            [1., 0., 0.],
            [2., 0., 0.],
            [0., 1., 0.],
            [5., 5., 5.],
        ];
        let f = [[0, 1, 3], [0, 1, 2], [0, 0, 3]];
        assert_eq!(nondegenerate(&v, &f, 0.0), vec![true, false, false]);
        let (map, n) = compact(5, &f[..1]);
        assert_eq!((map, n), (vec![0, 1, -1, 2, -1], 3));
    }
}
