//! Wavefront OBJ + MTL reader and writer.
//!
//! Reader: `v x y z [w]` or `v x y z r g b [a]` (vertex colours; 0–255 colours are rescaled when any
//! exceeds 1), `vt u v [w]`, `vn`, `f` with `v`, `v/t`, `v//n`, `v/t/n` corners, negative (relative)
//! indices, polygons fan-triangulated (c0, ci, ci+1), `mtllib`/`usemtl` with `Kd`, `d`, `Pm`, `Pr`,
//! `map_Kd`, `map_Pm`, `map_Pr`, `map_Bump`/`bump`/`norm`. Lines, points, groups, smoothing and unknown
//! statements are ignored. Every error names the file and the 1-based line.
//! Normals are per position: when a position is used with several `vn`, they are averaged.
use super::refs::{read_mesh_file, LoadOptions, Refs, Site};
use super::texture::{combine_mr, write_png};
use crate::mesh::{Material, Mesh, Texture};
use crate::{MeshError, Result};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Loaded {
    pub mesh: Mesh,
    pub warnings: Vec<String>,
}

pub fn read_obj(path: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let data = read_mesh_file(path)?;
    parse_obj(&data, path, opts)
}

/// `data.split(|c| *c == b'\n')` with a SIMD newline search (same pieces, including the final one).
struct Lines<'a> {
    data: &'a [u8],
    done: bool,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];
    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        match memchr::memchr(b'\n', self.data) {
            Some(i) => {
                let (l, rest) = (&self.data[..i], &self.data[i + 1..]);
                self.data = rest;
                Some(l)
            }
            None => {
                self.done = true;
                Some(self.data)
            }
        }
    }
}

fn lines(data: &[u8]) -> Lines<'_> {
    Lines { data, done: false }
}

#[inline]
fn split_ws(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    // A token starting with '#' begins a trailing comment (some exporters write `f 1 2 3 # quad`).
    s.split(|c| *c == b' ' || *c == b'\t' || *c == b'\r')
        .filter(|t| !t.is_empty())
        .take_while(|t| t[0] != b'#')
}

/// Fast path for plain decimals (`-12.345678`, ≤ 19 digits, no exponent), correctly rounded to f32:
/// m / 10^k is computed in f64 (exact inputs, one rounding), and the f64 → f32 step can only differ from
/// direct rounding when the f64 lands exactly on an f32 rounding midpoint, which is sent to the slow path.
#[inline]
fn fast_f32(tok: &[u8]) -> Option<f32> {
    const P10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    let (neg, rest) = match tok.first()? {
        b'-' => (true, &tok[1..]),
        b'+' => (false, &tok[1..]),
        _ => (false, tok),
    };
    let mut m: u64 = 0;
    let mut digits = 0usize;
    let mut frac = 0usize;
    let mut seen_dot = false;
    for &c in rest {
        if c.is_ascii_digit() {
            m = m * 10 + (c - b'0') as u64;
            digits += 1;
            frac += seen_dot as usize;
        } else if c == b'.' && !seen_dot {
            seen_dot = true;
        } else {
            return None;
        }
    }
    if digits == 0 || digits > 15 || frac > 22 {
        return None;
    }
    let y = m as f64 / P10[frac];
    let bits = y.to_bits() & ((1u64 << 29) - 1);
    let x = y as f32;
    // exact f32 midpoint (tie pattern in the 29 dropped mantissa bits), or subnormal range: slow path
    if bits == 1u64 << 28 || (x != 0.0 && x.abs() < f32::MIN_POSITIVE) {
        return None;
    }
    Some(if neg { -x } else { x })
}

#[inline]
fn parse_f32(tok: &[u8], path: &Path, line: usize) -> Result<f32> {
    if let Some(x) = fast_f32(tok) {
        return Ok(x);
    }
    std::str::from_utf8(tok)
        .ok()
        .and_then(|s| s.parse::<f32>().ok())
        .ok_or_else(|| {
            MeshError::parse(
                path,
                line,
                format!("expected a number, got {:?}", String::from_utf8_lossy(tok)),
            )
        })
}

/// Parses a 1-based (or negative, relative) OBJ index into a 0-based one, checked against `count`.
#[inline]
fn parse_index(tok: &[u8], count: usize, what: &str, path: &Path, line: usize) -> Result<u32> {
    let bad = || {
        MeshError::parse(
            path,
            line,
            format!("bad {what} index {:?}", String::from_utf8_lossy(tok)),
        )
    };
    let (neg, digits) = match tok.first() {
        Some(b'-') => (true, &tok[1..]),
        Some(b'+') => (false, &tok[1..]),
        _ => (false, tok),
    };
    if digits.is_empty() || digits.len() > 12 {
        return Err(bad());
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return Err(bad());
        }
        v = v * 10 + (c - b'0') as i64;
    }
    let idx = if neg { count as i64 - v } else { v - 1 };
    if v == 0 || idx < 0 || idx >= count as i64 {
        return Err(MeshError::parse(
            path,
            line,
            format!(
                "{what} index {} out of range (1..={count} or -1..=-{count})",
                String::from_utf8_lossy(tok)
            ),
        ));
    }
    Ok(idx as u32)
}

/// Everything one chunk of lines contributes; indices are already global.
#[derive(Default)]
struct Chunk {
    verts: Vec<[f32; 3]>,
    colors: Vec<[f32; 3]>, // empty, or one per vertex of this chunk
    n_colored: usize,
    uvs: Vec<[f32; 2]>,
    vns: Vec<[f32; 3]>,
    faces: Vec<[u32; 3]>,
    uv_faces: Vec<[u32; 3]>,
    nrm_faces: Vec<[u32; 3]>, // empty, or one per face of this chunk
    any_uv: bool,
    any_nrm: bool,
    /// (line, keyword, rest of line) for `mtllib` / `usemtl`, applied in order after the parse.
    stmts: Vec<(usize, &'static str, String)>,
}

/// Parses the lines of `data` (the first is line `line0`), given how many v / vt / vn lines precede it.
fn parse_chunk(data: &[u8], line0: usize, base: [usize; 3], path: &Path) -> Result<Chunk> {
    let mut c = Chunk {
        verts: Vec::with_capacity(data.len() / 64),
        faces: Vec::with_capacity(data.len() / 32),
        uv_faces: Vec::with_capacity(data.len() / 32),
        ..Default::default()
    };
    let mut corner: Vec<(u32, u32, u32)> = Vec::with_capacity(8);
    for (li, raw) in lines(data).enumerate() {
        let line = line0 + li;
        let mut toks = split_ws(raw);
        let Some(kw) = toks.next() else { continue };
        match kw {
            b"v" => {
                let mut p = [0f32; 7];
                let mut n = 0;
                for t in toks {
                    if n == 7 {
                        return Err(MeshError::parse(
                            path,
                            line,
                            "too many values on a 'v' line (at most 7)",
                        ));
                    }
                    p[n] = parse_f32(t, path, line)?;
                    n += 1;
                }
                if n < 3 {
                    return Err(MeshError::parse(
                        path,
                        line,
                        format!("'v' needs x y z, got {n} values"),
                    ));
                }
                if !(p[0].is_finite() && p[1].is_finite() && p[2].is_finite()) {
                    return Err(MeshError::parse(
                        path,
                        line,
                        "vertex position is not finite",
                    ));
                }
                let col = match n {
                    6 => Some([p[3], p[4], p[5]]),
                    7 => Some([p[3], p[4], p[5]]), // x y z r g b a
                    _ => None,
                };
                if let Some(col) = col {
                    if !col.iter().all(|x| x.is_finite()) {
                        return Err(MeshError::parse(path, line, "vertex colour is not finite"));
                    }
                    c.colors.resize(c.verts.len(), [1.0; 3]);
                    c.colors.push(col);
                    c.n_colored += 1;
                }
                c.verts.push([p[0], p[1], p[2]]);
            }
            b"vt" => {
                let mut p = [0f32; 2];
                let mut n = 0;
                for t in toks.take(3) {
                    let x = parse_f32(t, path, line)?;
                    if n < 2 {
                        p[n] = x;
                    }
                    n += 1;
                }
                if n < 1 {
                    return Err(MeshError::parse(path, line, "'vt' needs at least u"));
                }
                if !(p[0].is_finite() && p[1].is_finite()) {
                    return Err(MeshError::parse(
                        path,
                        line,
                        "texture coordinate is not finite",
                    ));
                }
                c.uvs.push(p);
            }
            b"vn" => {
                let mut p = [0f32; 3];
                let mut n = 0;
                for t in toks.take(3) {
                    p[n] = parse_f32(t, path, line)?;
                    n += 1;
                }
                if n < 3 {
                    return Err(MeshError::parse(
                        path,
                        line,
                        format!("'vn' needs 3 values, got {n}"),
                    ));
                }
                if !p.iter().all(|x| x.is_finite()) {
                    return Err(MeshError::parse(path, line, "normal is not finite"));
                }
                c.vns.push(p);
            }
            b"f" | b"fo" => {
                corner.clear();
                for t in toks {
                    let mut parts = t.split(|c| *c == b'/');
                    let vi = parse_index(
                        parts.next().unwrap_or(b""),
                        base[0] + c.verts.len(),
                        "vertex",
                        path,
                        line,
                    )?;
                    let ti = match parts.next() {
                        Some(s) if !s.is_empty() => {
                            parse_index(s, base[1] + c.uvs.len(), "texture", path, line)?
                        }
                        _ => u32::MAX,
                    };
                    let ni = match parts.next() {
                        Some(s) if !s.is_empty() => {
                            parse_index(s, base[2] + c.vns.len(), "normal", path, line)?
                        }
                        _ => u32::MAX,
                    };
                    if parts.next().is_some() {
                        return Err(MeshError::parse(
                            path,
                            line,
                            format!("bad face corner {:?}", String::from_utf8_lossy(t)),
                        ));
                    }
                    corner.push((vi, ti, ni));
                }
                if corner.len() < 3 {
                    return Err(MeshError::parse(
                        path,
                        line,
                        format!("a face needs at least 3 corners, got {}", corner.len()),
                    ));
                }
                let has_t = corner.iter().all(|k| k.1 != u32::MAX);
                let has_n = corner.iter().all(|k| k.2 != u32::MAX);
                for i in 1..corner.len() - 1 {
                    let (a, b, d) = (corner[0], corner[i], corner[i + 1]);
                    c.faces.push([a.0, b.0, d.0]);
                    c.uv_faces.push(if has_t {
                        [a.1, b.1, d.1]
                    } else {
                        [u32::MAX; 3]
                    });
                    if has_n || c.any_nrm {
                        c.nrm_faces.resize(c.faces.len() - 1, [u32::MAX; 3]);
                        c.nrm_faces.push(if has_n {
                            [a.2, b.2, d.2]
                        } else {
                            [u32::MAX; 3]
                        });
                    }
                }
                c.any_uv |= has_t;
                c.any_nrm |= has_n;
            }
            b"mtllib" | b"usemtl" => {
                let rest = rest_of_line(raw, kw);
                c.stmts.push((
                    line,
                    if kw == b"mtllib" { "mtllib" } else { "usemtl" },
                    rest,
                ));
            }
            _ => {} // o, g, s, l, p, comments, curves: not part of the triangle mesh
        }
    }
    if c.n_colored > 0 {
        c.colors.resize(c.verts.len(), [1.0; 3]);
    }
    if c.any_nrm {
        c.nrm_faces.resize(c.faces.len(), [u32::MAX; 3]);
    }
    Ok(c)
}

/// The statement keyword of a line: its first token as `split_ws` cuts it (`None` for a blank or comment
/// line), so the counting pass and the parse agree on which lines are `v`/`vt`/`vn` whatever the
/// whitespace, `\r` included.
#[inline]
fn keyword(raw: &[u8]) -> Option<&[u8]> {
    let ws = |c: &u8| matches!(*c, b' ' | b'\t' | b'\r');
    let start = raw.iter().position(|c| !ws(c))?;
    let rest = &raw[start..];
    if rest[0] == b'#' {
        return None;
    }
    Some(&rest[..rest.iter().position(ws).unwrap_or(rest.len())])
}

/// Counts (lines, v, vt, vn) in a chunk: the cheap first pass that gives every chunk its global offsets.
fn count_chunk(data: &[u8]) -> [usize; 4] {
    let mut n = [0usize; 4];
    for raw in lines(data) {
        n[0] += 1;
        match keyword(raw) {
            Some(b"v") => n[1] += 1,
            Some(b"vt") => n[2] += 1,
            Some(b"vn") => n[3] += 1,
            _ => {}
        }
    }
    n
}

/// Chunk boundaries: `nchunks` pieces of `data`, each ending just after a '\n' (the last one at the end).
fn chunk_bounds(data: &[u8], nchunks: usize) -> Vec<usize> {
    let mut bounds = vec![0usize];
    for k in 1..nchunks {
        let mut p = (data.len() * k / nchunks)
            .max(*bounds.last().unwrap_or(&0))
            .max(1);
        while p < data.len() && data[p - 1] != b'\n' {
            p += 1;
        }
        if p < data.len() && p > *bounds.last().unwrap_or(&0) {
            bounds.push(p);
        }
    }
    bounds.push(data.len());
    bounds
}

/// Parses `data` as `nchunks` line-aligned chunks in parallel. Counts come first, so negative indices and
/// range checks see the global totals and errors keep their line numbers.
fn parse_chunks(data: &[u8], path: &Path, nchunks: usize) -> Result<Vec<Chunk>> {
    use rayon::prelude::*;
    let bounds = chunk_bounds(data, nchunks);
    let pieces: Vec<&[u8]> = bounds.windows(2).map(|w| &data[w[0]..w[1]]).collect();
    let counts: Vec<[usize; 4]> = pieces.par_iter().map(|d| count_chunk(d)).collect();
    let mut offs = Vec::with_capacity(pieces.len());
    let mut acc = [1usize, 0, 0, 0];
    for (i, c) in counts.iter().enumerate() {
        offs.push(acc);
        // a chunk that ends in '\n' has an empty final split piece that is really the next chunk's first line
        let lines = if i + 1 < pieces.len() { c[0] - 1 } else { c[0] };
        acc = [acc[0] + lines, acc[1] + c[1], acc[2] + c[2], acc[3] + c[3]];
    }
    // Collect every result, then report the first error in file order (deterministic messages).
    let results: Vec<Result<Chunk>> = pieces
        .par_iter()
        .zip(offs.par_iter())
        .map(|(d, o)| parse_chunk(d, o[0], [o[1], o[2], o[3]], path))
        .collect();
    let chunks: Vec<Chunk> = results.into_iter().collect::<Result<_>>()?;
    // The offsets are only right if both passes saw the same statements; a disagreement would silently
    // shift every relative index in later chunks, so it is an error, never a wrong mesh.
    for (c, n) in chunks.iter().zip(&counts) {
        if [c.verts.len(), c.uvs.len(), c.vns.len()] != [n[1], n[2], n[3]] {
            return Err(MeshError::parse(
                path,
                0,
                "internal error: OBJ chunk counts disagree (please report this file)",
            ));
        }
    }
    Ok(chunks)
}

/// The chunks' contributions concatenated.
#[derive(Default)]
struct Parsed {
    verts: Vec<[f32; 3]>,
    colors: Vec<[f32; 3]>,
    n_colored: usize,
    uvs: Vec<[f32; 2]>,
    vns: Vec<[f32; 3]>,
    faces: Vec<[u32; 3]>,
    uv_faces: Vec<[u32; 3]>,
    nrm_faces: Vec<[u32; 3]>,
    any_uv: bool,
    any_nrm: bool,
    stmts: Vec<(usize, &'static str, String)>,
}

fn merge(chunks: Vec<Chunk>) -> Parsed {
    let total = |f: fn(&Chunk) -> usize| chunks.iter().map(f).sum::<usize>();
    let mut p = Parsed {
        verts: Vec::with_capacity(total(|c| c.verts.len())),
        uvs: Vec::with_capacity(total(|c| c.uvs.len())),
        vns: Vec::with_capacity(total(|c| c.vns.len())),
        faces: Vec::with_capacity(total(|c| c.faces.len())),
        uv_faces: Vec::with_capacity(total(|c| c.faces.len())),
        n_colored: total(|c| c.n_colored),
        any_uv: chunks.iter().any(|c| c.any_uv),
        any_nrm: chunks.iter().any(|c| c.any_nrm),
        ..Default::default()
    };
    for c in chunks {
        if p.n_colored > 0 {
            if c.colors.is_empty() {
                p.colors.resize(p.colors.len() + c.verts.len(), [1.0; 3]);
            } else {
                p.colors.extend_from_slice(&c.colors);
            }
        }
        if p.any_nrm {
            if c.nrm_faces.is_empty() {
                p.nrm_faces
                    .resize(p.nrm_faces.len() + c.faces.len(), [u32::MAX; 3]);
            } else {
                p.nrm_faces.extend_from_slice(&c.nrm_faces);
            }
        }
        p.verts.extend_from_slice(&c.verts);
        p.uvs.extend_from_slice(&c.uvs);
        p.vns.extend_from_slice(&c.vns);
        p.faces.extend_from_slice(&c.faces);
        p.uv_faces.extend_from_slice(&c.uv_faces);
        p.stmts.extend(c.stmts);
    }
    p
}

pub fn parse_obj(data: &[u8], path: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let nchunks = if data.len() < 1 << 18 {
        1
    } else {
        (rayon::current_num_threads() * 4).clamp(1, 64)
    };
    parse_obj_chunked(data, path, opts, nchunks)
}

fn parse_obj_chunked(
    data: &[u8],
    path: &Path,
    opts: &LoadOptions,
    nchunks: usize,
) -> Result<Loaded> {
    // Classic Mac OS files end lines with a lone '\r': read them as '\n' (a '\r' beside a '\n', as in
    // "\r\n" or "\n\r" endings, is whitespace and needs nothing).
    let owned: Vec<u8>;
    let data = if memchr::memchr(b'\n', data).is_none() && memchr::memchr(b'\r', data).is_some() {
        owned = data
            .iter()
            .map(|&c| if c == b'\r' { b'\n' } else { c })
            .collect();
        &owned[..]
    } else {
        data
    };
    let p = merge(parse_chunks(data, path, nchunks)?);
    let mut warnings = Vec::new();
    let mut refs = Refs::new(path, opts);
    let mut libs = Libraries::default();
    for (line, kw, rest) in &p.stmts {
        if *kw == "mtllib" {
            libs.mtllib(rest, path, *line, &mut refs)?;
        } else {
            libs.usemtl(rest, path, *line, &mut warnings);
        }
    }
    let mut mesh = build_mesh(p, path, &mut warnings);
    if libs.used.len() > 1 {
        warnings.push(format!(
            "{}: {} materials used ({}); only the first, {:?}, is kept",
            path.display(),
            libs.used.len(),
            libs.used.join(", "),
            libs.used[0]
        ));
    }
    let chosen = libs.used.first().or(libs.order.first()).cloned();
    if let Some(m) = chosen.and_then(|n| libs.materials.remove(&n)) {
        mesh.material = Some(m.load_maps(&mut refs, &mut warnings)?);
    }
    Ok(Loaded { mesh, warnings })
}

/// Materials from the `mtllib` statements, in the order they apply.
#[derive(Default)]
struct Libraries {
    materials: HashMap<String, MtlEntry>,
    order: Vec<String>,
    used: Vec<String>,
    /// Libraries already read (canonical paths): a repeated `mtllib` is parsed once.
    done: std::collections::HashSet<PathBuf>,
}

impl Libraries {
    fn mtllib(&mut self, rest: &str, path: &Path, line: usize, refs: &mut Refs) -> Result<()> {
        if rest.is_empty() {
            return Err(MeshError::parse(path, line, "'mtllib' needs a file name"));
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let site = Site {
            src: path,
            line,
            what: "mtllib",
        };
        // Either one name with spaces or several space-separated libraries.
        let whole = rest.contains(char::is_whitespace)
            && refs.resolve(rest, &dir, site).is_ok_and(|p| p.is_file());
        let names: Vec<String> = if whole {
            vec![rest.to_string()]
        } else {
            rest.split_whitespace().map(str::to_string).collect()
        };
        for name in names {
            refs.count("mtllib", site)?;
            let shown = dir.join(&name);
            let cant = |e: MeshError| match e {
                MeshError::Io { source, .. } => MeshError::parse(
                    path,
                    line,
                    format!("cannot read mtllib {}: {source}", shown.display()),
                ),
                e => e,
            };
            let mpath = refs.resolve(&name, &dir, site).map_err(cant)?;
            if !self.done.insert(mpath.clone()) {
                continue;
            }
            let mtl = refs.read(&mpath, &name, site).map_err(cant)?;
            let mdir = shown.parent().map(Path::to_path_buf).unwrap_or_default();
            for m in parse_mtl(&mtl, &shown, &mdir, refs)? {
                if !self.materials.contains_key(&m.mat.name) {
                    self.order.push(m.mat.name.clone());
                }
                self.materials.insert(m.mat.name.clone(), m);
            }
        }
        Ok(())
    }

    fn usemtl(&mut self, name: &str, path: &Path, line: usize, warnings: &mut Vec<String>) {
        if !self.materials.contains_key(name) {
            warnings.push(format!(
                "{}:{line}: usemtl {name:?}: material not defined by any mtllib; ignored",
                path.display()
            ));
        } else if !self.used.iter().any(|u| u == name) {
            self.used.push(name.to_string());
        }
    }
}

/// Assembles the mesh (colours, UVs, per-position normals) from the parsed statements.
fn build_mesh(p: Parsed, path: &Path, warnings: &mut Vec<String>) -> Mesh {
    let Parsed {
        verts,
        mut colors,
        n_colored,
        mut uvs,
        vns,
        faces,
        mut uv_faces,
        mut nrm_faces,
        any_uv,
        any_nrm,
        ..
    } = p;
    let nv = verts.len();
    let mut mesh = Mesh {
        vertices: verts,
        faces,
        ..Default::default()
    };
    if n_colored > 0 {
        if n_colored < nv {
            warnings.push(format!(
                "{}: {} of {nv} vertices have colours; the others get white",
                path.display(),
                n_colored
            ));
        }
        colors.resize(nv, [1.0; 3]);
        // Some exporters write 0–255 colours; the format says floats in [0, 1].
        if colors.iter().flatten().any(|&x| x > 1.0) {
            colors.iter_mut().flatten().for_each(|x| *x /= 255.0);
        }
        mesh.colors = Some(colors);
    }
    if any_uv {
        if uv_faces.iter().any(|f| f[0] == u32::MAX) {
            // Faces without `vt` map to an extra (0, 0) texcoord so the index buffer stays rectangular.
            let dummy = uvs.len() as u32;
            uvs.push([0.0, 0.0]);
            uv_faces
                .iter_mut()
                .filter(|f| f[0] == u32::MAX)
                .for_each(|f| *f = [dummy; 3]);
            warnings.push(format!(
                "{}: some faces have no texture coordinates; they map to uv (0, 0)",
                path.display()
            ));
        }
        mesh.uvs = Some(uvs);
        mesh.uv_faces = Some(uv_faces);
    }
    if any_nrm {
        nrm_faces.resize(mesh.faces.len(), [u32::MAX; 3]);
        match position_normals(&mesh.faces, &nrm_faces, &vns, nv) {
            Some(n) => mesh.normals = Some(n),
            None => warnings.push(format!(
                "{}: normals given for only some faces; dropped",
                path.display()
            )),
        }
    }
    mesh
}

/// Per-position normals (the average of every `vn` a position is used with), or `None` when some used
/// position has none.
fn position_normals(
    faces: &[[u32; 3]],
    nrm_faces: &[[u32; 3]],
    vns: &[[f32; 3]],
    nv: usize,
) -> Option<Vec<[f32; 3]>> {
    let mut acc = vec![[0f32; 3]; nv];
    let mut have = vec![false; nv];
    let mut used_v = vec![false; nv];
    for (f, nf) in faces.iter().zip(nrm_faces) {
        for k in 0..3 {
            used_v[f[k] as usize] = true;
            if nf[k] != u32::MAX {
                let n = vns[nf[k] as usize];
                let a = &mut acc[f[k] as usize];
                a[0] += n[0];
                a[1] += n[1];
                a[2] += n[2];
                have[f[k] as usize] = true;
            }
        }
    }
    if !(0..nv).all(|i| have[i] || !used_v[i]) {
        return None;
    }
    for a in acc.iter_mut() {
        let l = (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt();
        if l > 0.0 {
            a.iter_mut().for_each(|x| *x /= l);
        }
    }
    Some(acc)
}

fn rest_of_line(raw: &[u8], kw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let s = s.trim();
    s[kw.len().min(s.len())..].trim().to_string()
}

/// Texture map statement: skips `-opt args` and returns the file name (may contain spaces).
fn map_file(rest: &str) -> String {
    let toks: Vec<&str> = rest.split_whitespace().collect();
    let mut i = 0;
    while i < toks.len() && toks[i].starts_with('-') && toks[i].len() > 1 && toks.len() - i > 1 {
        i += 1;
        while i < toks.len() - 1
            && (toks[i].parse::<f32>().is_ok()
                || matches!(toks[i], "on" | "off" | "r" | "g" | "b" | "m" | "l" | "z"))
        {
            i += 1;
        }
    }
    toks[i..].join(" ")
}

/// A texture map statement, read only if its material is the one kept.
#[derive(Clone, Debug)]
pub struct MapRef {
    /// The file name as written (backslashes turned into '/').
    pub name: String,
    /// The MTL file and line that name it, and the folder the name is relative to.
    pub mtl: PathBuf,
    pub line: usize,
    pub dir: PathBuf,
    pub keyword: String,
}

/// An MTL material whose texture maps are not read yet: the maps of unused materials are never opened,
/// and a map named many times is decoded once.
#[derive(Clone, Debug, Default)]
pub struct MtlEntry {
    pub mat: Material,
    /// base colour, metallic, roughness, normal
    pub maps: [Option<MapRef>; 4],
}

impl MtlEntry {
    /// Reads and decodes the maps. A map that cannot be read (missing, undecodable, or refused by the path
    /// policy, e.g. an absolute path from the author's machine) is dropped with a warning, as broken texture
    /// paths are common in downloaded models; an exceeded limit fails the load.
    pub fn load_maps(self, refs: &mut Refs, warnings: &mut Vec<String>) -> Result<Material> {
        let mut tex: [Option<Texture>; 4] = Default::default();
        for (k, m) in self.maps.iter().enumerate() {
            let Some(m) = m else { continue };
            let site = Site {
                src: &m.mtl,
                line: m.line,
                what: &m.keyword,
            };
            match refs.texture(&m.name, &m.dir, site, k == 0 || k == 3) {
                Ok(t) => tex[k] = Some(t),
                Err(e @ MeshError::Limit { .. }) => return Err(e),
                Err(e @ MeshError::Refused { .. }) => {
                    warnings.push(format!("{e} (texture dropped)"))
                }
                Err(e) => warnings.push(format!(
                    "{}:{}: {} texture dropped: {e}",
                    m.mtl.display(),
                    m.line,
                    m.keyword
                )),
            }
        }
        let [base, pm, pr, normal] = tex;
        let mut mat = self.mat;
        mat.base_color_texture = base;
        mat.normal_texture = normal;
        if pm.is_some() || pr.is_some() {
            mat.metallic_roughness_texture = combine_mr(pm.as_ref(), pr.as_ref());
        }
        Ok(mat)
    }
}

/// Parses an MTL file. Malformed statements are errors with file and line; texture maps are recorded
/// (and counted against the reference limit), not read.
pub fn parse_mtl(data: &[u8], path: &Path, dir: &Path, refs: &mut Refs) -> Result<Vec<MtlEntry>> {
    let mut out: Vec<MtlEntry> = Vec::new();
    for (li, raw) in data.split(|c| *c == b'\n').enumerate() {
        let line = li + 1;
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        let mut toks = text.split_whitespace();
        let Some(kw) = toks.next() else { continue };
        if kw.starts_with('#') {
            continue;
        }
        let rest = text[kw.len()..].trim();
        if kw == "newmtl" {
            out.push(MtlEntry {
                mat: Material {
                    name: rest.to_string(),
                    ..Default::default()
                },
                maps: Default::default(),
            });
            continue;
        }
        let Some(e) = out.last_mut() else {
            if matches!(kw, "Kd" | "map_Kd" | "d" | "Tr" | "Pm" | "Pr") {
                return Err(MeshError::parse(
                    path,
                    line,
                    format!("'{kw}' before any 'newmtl'"),
                ));
            }
            continue;
        };
        let nums = |n: usize| -> Result<Vec<f32>> {
            let v: Vec<f32> = rest
                .split_whitespace()
                .take(n)
                .map(|t| {
                    t.parse::<f32>().map_err(|_| {
                        MeshError::parse(path, line, format!("expected a number, got {t:?}"))
                    })
                })
                .collect::<Result<_>>()?;
            if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
                return Err(MeshError::parse(
                    path,
                    line,
                    format!("'{kw}' needs finite numbers"),
                ));
            }
            Ok(v)
        };
        let slot = match kw {
            "map_Kd" => Some(0),
            "map_Pm" => Some(1),
            "map_Pr" => Some(2),
            "map_Bump" | "map_bump" | "bump" | "norm" | "map_Norm" => Some(3),
            _ => None,
        };
        if let Some(k) = slot {
            refs.count(
                "texture map",
                Site {
                    src: path,
                    line,
                    what: kw,
                },
            )?;
            let f = map_file(rest);
            if f.is_empty() {
                return Err(MeshError::parse(
                    path,
                    line,
                    format!("'{kw}' needs a file name"),
                ));
            }
            let name = f.replace('\\', "/");
            e.maps[k] = Some(MapRef {
                name,
                mtl: path.to_path_buf(),
                line,
                dir: dir.to_path_buf(),
                keyword: kw.to_string(),
            });
            continue;
        }
        let m = &mut e.mat;
        match kw {
            "Kd" => {
                let v = nums(3)?;
                let g = |i: usize| *v.get(i).unwrap_or(&v[0]);
                m.base_color_factor = [g(0), g(1), g(2), m.base_color_factor[3]];
            }
            "d" => m.base_color_factor[3] = nums(1)?[0],
            "Tr" => m.base_color_factor[3] = 1.0 - nums(1)?[0],
            "Pm" => m.metallic_factor = nums(1)?[0],
            "Pr" => m.roughness_factor = nums(1)?[0],
            _ => {}
        }
    }
    Ok(out)
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mesh".into())
}

/// Writes `path` (.obj), plus `<stem>.mtl` and `<stem>_*.png` textures next to it when the mesh has a
/// material. UVs are written as stored (OBJ convention, v up); normals share the position index.
pub fn write_obj(mesh: &Mesh, path: &Path) -> Result<()> {
    mesh.validate("save_mesh")?;
    let stem = file_stem(path);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut s: Vec<u8> = Vec::with_capacity(mesh.vertices.len() * 40 + mesh.faces.len() * 30);
    let io = |e: std::io::Error| MeshError::io(path, e);
    writeln!(s, "# written by pgc-fast rust_mesh {}", crate::version()).map_err(io)?;
    if let Some(m) = &mesh.material {
        write_mtl(m, &dir, &stem)?;
        writeln!(s, "mtllib {stem}.mtl").map_err(io)?;
    }
    writeln!(s, "o {stem}").map_err(io)?;
    for (i, v) in mesh.vertices.iter().enumerate() {
        match &mesh.colors {
            Some(c) => {
                let c = c[i];
                writeln!(s, "v {} {} {} {} {} {}", v[0], v[1], v[2], c[0], c[1], c[2])
            }
            None => writeln!(s, "v {} {} {}", v[0], v[1], v[2]),
        }
        .map_err(io)?;
    }
    if let Some(uv) = &mesh.uvs {
        for t in uv {
            writeln!(s, "vt {} {}", t[0], t[1]).map_err(io)?;
        }
    }
    if let Some(n) = &mesh.normals {
        for t in n {
            writeln!(s, "vn {} {} {}", t[0], t[1], t[2]).map_err(io)?;
        }
    }
    if let Some(m) = &mesh.material {
        writeln!(s, "usemtl {}", m.name).map_err(io)?;
    }
    let has_n = mesh.normals.is_some();
    for (i, f) in mesh.faces.iter().enumerate() {
        let (a, b, c) = (f[0] + 1, f[1] + 1, f[2] + 1);
        match (&mesh.uv_faces, has_n) {
            (Some(uf), true) => {
                let t = uf[i];
                writeln!(
                    s,
                    "f {a}/{}/{a} {b}/{}/{b} {c}/{}/{c}",
                    t[0] + 1,
                    t[1] + 1,
                    t[2] + 1
                )
            }
            (Some(uf), false) => {
                let t = uf[i];
                writeln!(s, "f {a}/{} {b}/{} {c}/{}", t[0] + 1, t[1] + 1, t[2] + 1)
            }
            (None, true) => writeln!(s, "f {a}//{a} {b}//{b} {c}//{c}"),
            (None, false) => writeln!(s, "f {a} {b} {c}"),
        }
        .map_err(io)?;
    }
    std::fs::write(path, s).map_err(io)
}

fn write_mtl(m: &Material, dir: &Path, stem: &str) -> Result<()> {
    let mpath = dir.join(format!("{stem}.mtl"));
    let mut s = String::new();
    let f = m.base_color_factor;
    s += &format!("# written by pgc-fast rust_mesh\nnewmtl {}\n", m.name);
    s += &format!(
        "Ka 0 0 0\nKd {} {} {}\nKs 0 0 0\nd {}\nillum 2\nPm {}\nPr {}\n",
        f[0], f[1], f[2], f[3], m.metallic_factor, m.roughness_factor
    );
    if let Some(t) = &m.base_color_texture {
        let name = format!("{stem}_kd.png");
        write_png(t, &dir.join(&name))?;
        s += &format!("map_Kd {name}\n");
    }
    if let Some(t) = &m.metallic_roughness_texture {
        // OBJ has separate grey maps: metallic from B, roughness from G (glTF layout).
        let (pm, pr) = (format!("{stem}_pm.png"), format!("{stem}_pr.png"));
        write_png(&super::texture::channel(t, 2), &dir.join(&pm))?;
        write_png(&super::texture::channel(t, 1), &dir.join(&pr))?;
        s += &format!("map_Pm {pm}\nmap_Pr {pr}\n");
    }
    if let Some(t) = &m.normal_texture {
        let name = format!("{stem}_normal.png");
        write_png(t, &dir.join(&name))?;
        s += &format!("map_Bump {name}\n");
    }
    std::fs::write(&mpath, s).map_err(|e| MeshError::io(&mpath, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fast_float_is_correctly_rounded(m in 0u64..1_000_000_000_000_000, frac in 0usize..16, neg in any::<bool>()) {
            let digits = m.to_string();
            let s = if frac == 0 { digits.clone() } else {
                let d = format!("{:0>w$}", digits, w = frac + 1);
                format!("{}.{}", &d[..d.len() - frac], &d[d.len() - frac..])
            };
            let s = if neg { format!("-{s}") } else { s };
            let want: f32 = s.parse().unwrap();
            if let Some(got) = fast_f32(s.as_bytes()) {
                prop_assert_eq!(got.to_bits(), want.to_bits(), "{}", s);
            }
        }
    }

    #[test]
    fn chunked_parse_keeps_global_line_numbers_and_relative_indices() {
        // > 256 KiB so the file is split into parallel chunks.
        let mut text = String::new();
        let n = 40_000;
        for i in 0..n {
            text += &format!("v {i} 0.5 -1.25\n");
        }
        for i in 1..n - 1 {
            text += &format!("f {} -2 -1\n", i);
        }
        let m = parse_obj(
            text.as_bytes(),
            Path::new("big.obj"),
            &LoadOptions::default(),
        )
        .unwrap()
        .mesh;
        assert_eq!(m.vertices.len(), n);
        assert_eq!(m.faces.len(), n - 2);
        assert!(m
            .faces
            .iter()
            .enumerate()
            .all(|(i, f)| *f == [i as u32, n as u32 - 2, n as u32 - 1]));
        assert_eq!(m.vertices[12345], [12345.0, 0.5, -1.25]);
        let bad = format!("{text}f 1 2 {}\n", n + 1);
        let e = parse_obj(
            bad.as_bytes(),
            Path::new("big.obj"),
            &LoadOptions::default(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.starts_with(&format!("big.obj:{}: vertex index {}", 2 * n - 1, n + 1)),
            "{e}"
        );
    }

    #[test]
    fn fast_float_rejects_non_plain_numbers() {
        for t in ["1e5", "nan", "inf", "1.2.3", "", "-", ".", "0x1"] {
            assert!(fast_f32(t.as_bytes()).is_none(), "{t}");
        }
        assert_eq!(fast_f32(b"-21.814154"), Some(-21.814154f32));
    }

    /// A random OBJ (seeded xorshift): v / vt / vn / faces with absolute and relative indices (some out of
    /// range), comments and blank lines, with random ' ', '\t', '\r' padding; lines joined by '\n'.
    fn random_obj_lines(seed: u64, n: usize) -> Vec<String> {
        let mut s = seed | 1;
        let mut rnd = move |m: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % m
        };
        let pads = [" ", "\t", "\r", "  ", " \r"];
        let mut nv = 0i64;
        let mut lines = Vec::new();
        for _ in 0..n {
            let pad = pads[rnd(5) as usize];
            let idx = |nv: i64, r: u64| -> String {
                let i = (r % (nv.max(1) as u64 + 1)) as i64;
                if r.is_multiple_of(2) {
                    format!("{}", i.max(1))
                } else {
                    format!("-{}", i.max(1))
                }
            };
            let l = match rnd(9) {
                0..=3 => {
                    nv += 1;
                    format!("v{pad}{} {}{pad}{}", rnd(1000), rnd(7), rnd(13))
                }
                4 => format!("vt {} {}", rnd(10), rnd(10)),
                5 => "# v 1 2 3".to_string(),
                6 => String::new(),
                _ => {
                    let (a, b, c) = (rnd(1 << 20), rnd(1 << 20), rnd(1 << 20));
                    format!("{pad}f {}{pad}{} {}", idx(nv, a), idx(nv, b), idx(nv, c))
                }
            };
            lines.push(format!("{pad}{l}"));
        }
        lines
    }

    type Outcome = std::result::Result<(Vec<[f32; 3]>, Vec<[u32; 3]>), String>;

    fn outcome(r: Result<Loaded>) -> Outcome {
        r.map(|l| (l.mesh.vertices, l.mesh.faces))
            .map_err(|e| e.to_string())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// The counting pass and the parse must agree whatever the line endings and padding, or relative
        /// indices in later chunks resolve to the wrong vertices (issue 22: "\n\r" files over 256 KiB).
        #[test]
        fn line_endings_and_chunking_do_not_change_the_parse(seed in any::<u64>(), n in 1usize..80, eol in 0usize..5, k in 2usize..9) {
            let lines = random_obj_lines(seed, n);
            let o = LoadOptions::default();
            let p = Path::new("r.obj");
            // Every line ends in its terminator, so each text holds a '\n' unless it is a CR-only file (a
            // file without '\n' is read as classic Mac OS, '\r' ending lines; its lines hold no other '\r').
            let end = |eol: &str| lines.iter().map(|l| format!("{l}{eol}")).collect::<String>();
            let (text, plain) = match eol {
                0 => (end("\n\r"), end("\n")),
                1 => (end("\r\n"), end("\n")),
                2 => {
                    let no_cr: Vec<String> = lines.iter().map(|l| l.replace('\r', " ")).collect();
                    (no_cr.join("\r") + "\r", no_cr.join("\n") + "\n")
                }
                3 => (lines.iter().enumerate().map(|(i, l)| format!("{l}{}", ["\n", "\r\n", "\n\r"][i % 3])).collect(), end("\n")),
                _ => (end("\n"), end("\n")),
            };
            let want = outcome(parse_obj_chunked(plain.as_bytes(), p, &o, 1));
            prop_assert_eq!(&outcome(parse_obj_chunked(text.as_bytes(), p, &o, 1)), &want);
            prop_assert_eq!(&outcome(parse_obj_chunked(text.as_bytes(), p, &o, k)), &want);
        }
    }

    fn tmp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rust_mesh_obj_{}_{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn texture_maps_are_read_only_for_the_kept_material() {
        let d = tmp_dir("lazy_maps");
        let t = Texture::new(1, 1, 3, vec![1.0, 0.0, 0.0]).unwrap();
        write_png(&t, &d.join("red.png")).unwrap();
        // `unused` names a missing file and a path outside the folder: neither is touched. `m` names its
        // map twice: the last statement wins, as before.
        std::fs::write(d.join("a.mtl"), "newmtl unused\nmap_Kd missing.png\nmap_Pm /etc/hostname\nnewmtl m\nmap_Kd missing.png\nmap_Kd red.png\n").unwrap();
        let obj = d.join("a.obj");
        std::fs::write(
            &obj,
            "mtllib a.mtl\nmtllib a.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl m\nf 1 2 3\n",
        )
        .unwrap();
        let l = read_obj(&obj, &LoadOptions::default()).unwrap();
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(
            l.mesh.material.unwrap().base_color_texture.unwrap().data,
            vec![1.0, 0.0, 0.0]
        );
        // the same statements on the kept material are read: the missing map and the one outside the folder
        // are dropped with warnings
        std::fs::write(
            &obj,
            "mtllib a.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl unused\nf 1 2 3\n",
        )
        .unwrap();
        let l = read_obj(&obj, &LoadOptions::default()).unwrap();
        assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
        assert!(
            l.warnings[0].contains("a.mtl:2: map_Kd texture dropped: ")
                && l.warnings[0].contains("missing.png")
        );
        let want = "a.mtl:3: map_Pm \"/etc/hostname\": absolute paths are refused; pass allow_external_files=True \
                    (--mesh.allow_external_files) to allow it (texture dropped)";
        assert!(l.warnings[1].ends_with(want), "{}", l.warnings[1]);
        let m = l.mesh.material.unwrap();
        assert!(m.base_color_texture.is_none() && m.metallic_roughness_texture.is_none());
    }
}
