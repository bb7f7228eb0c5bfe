//! Stanford PLY reader (ascii, binary little/big endian) and binary little-endian writer.
//!
//! Vertex properties understood: x y z, nx ny nz, red green blue (also `r g b`, `diffuse_*`; integer
//! colours are divided by their type's maximum, float colours kept), s t / u v / texture_u texture_v.
//! Face properties: `vertex_indices` / `vertex_index` (any list type; polygons fan-triangulated) and an
//! optional per-corner `texcoord` list (MeshLab). `comment TextureFile <png>` loads a base-colour
//! texture. Unknown elements and properties are skipped. Errors name the line (ascii) or the byte offset
//! (binary).
use super::obj::Loaded;
use super::refs::{read_mesh_file, LoadOptions, Refs, Site};
use super::split_by_uv;
use super::texture::write_png;
use crate::mesh::{Material, Mesh};
use crate::{MeshError, Result};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ty {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    F32,
    F64,
}

impl Ty {
    fn parse(s: &str) -> Option<Ty> {
        Some(match s {
            "char" | "int8" => Ty::I8,
            "uchar" | "uint8" => Ty::U8,
            "short" | "int16" => Ty::I16,
            "ushort" | "uint16" => Ty::U16,
            "int" | "int32" => Ty::I32,
            "uint" | "uint32" => Ty::U32,
            "float" | "float32" => Ty::F32,
            "double" | "float64" => Ty::F64,
            _ => return None,
        })
    }
    fn size(self) -> usize {
        match self {
            Ty::I8 | Ty::U8 => 1,
            Ty::I16 | Ty::U16 => 2,
            Ty::I32 | Ty::U32 | Ty::F32 => 4,
            Ty::F64 => 8,
        }
    }
    /// Scale that maps an integer colour channel to [0, 1].
    fn color_scale(self) -> f64 {
        match self {
            Ty::U8 | Ty::I8 => 1.0 / 255.0,
            Ty::U16 | Ty::I16 => 1.0 / 65535.0,
            Ty::U32 | Ty::I32 => 1.0 / 4294967295.0,
            _ => 1.0,
        }
    }
}

struct Prop {
    name: String,
    ty: Ty,
    list: Option<Ty>, // count type for list properties
}

struct Element {
    name: String,
    count: usize,
    props: Vec<Prop>,
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Ascii,
    Le,
    Be,
}

struct Src<'a> {
    data: &'a [u8],
    pos: usize,
    fmt: Format,
    line: usize,
    path: &'a Path,
}

impl<'a> Src<'a> {
    fn err(&self, msg: impl Into<String>) -> MeshError {
        match self.fmt {
            Format::Ascii => MeshError::parse(self.path, self.line, msg),
            _ => MeshError::parse_at(self.path, self.pos, msg),
        }
    }
    fn next_token(&mut self) -> Result<&'a [u8]> {
        let d = self.data;
        while self.pos < d.len() && d[self.pos].is_ascii_whitespace() {
            if d[self.pos] == b'\n' {
                self.line += 1;
            }
            self.pos += 1;
        }
        let start = self.pos;
        while self.pos < d.len() && !d[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err("unexpected end of file"));
        }
        Ok(&d[start..self.pos])
    }
    fn read(&mut self, ty: Ty) -> Result<f64> {
        if self.fmt == Format::Ascii {
            let t = self.next_token()?;
            let s = std::str::from_utf8(t).map_err(|_| self.err("non-ASCII number"))?;
            let v: f64 = s
                .parse()
                .map_err(|_| self.err(format!("expected a number, got {s:?}")))?;
            if matches!(ty, Ty::F32 | Ty::F64) || v.fract() == 0.0 {
                return Ok(v);
            }
            return Err(self.err(format!("expected an integer, got {s:?}")));
        }
        let n = ty.size();
        if self.pos + n > self.data.len() {
            return Err(self.err(format!(
                "unexpected end of file (file has {} bytes)",
                self.data.len()
            )));
        }
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        if self.fmt == Format::Be {
            b[..n].reverse();
        }
        self.pos += n;
        Ok(match ty {
            Ty::I8 => b[0] as i8 as f64,
            Ty::U8 => b[0] as f64,
            Ty::I16 => i16::from_le_bytes([b[0], b[1]]) as f64,
            Ty::U16 => u16::from_le_bytes([b[0], b[1]]) as f64,
            Ty::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            Ty::U32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            Ty::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            Ty::F64 => f64::from_le_bytes(b),
        })
    }
}

pub fn read_ply(path: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let data = read_mesh_file(path)?;
    parse_ply(&data, path, opts)
}

pub fn parse_ply(data: &[u8], path: &Path, opts: &LoadOptions) -> Result<Loaded> {
    // ---- header (ASCII lines up to and including `end_header`) ----
    let mut pos = 0usize;
    let mut line = 0usize;
    let mut fmt = None;
    let mut elems: Vec<Element> = Vec::new();
    let mut texture_file: Option<(String, usize)> = None;
    let mut saw_end = false;
    while pos < data.len() {
        let end = data[pos..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(data.len(), |e| pos + e);
        let raw = &data[pos..end];
        pos = (end + 1).min(data.len());
        line += 1;
        let text = std::str::from_utf8(raw)
            .map_err(|_| MeshError::parse(path, line, "non-UTF-8 header line"))?
            .trim();
        let toks: Vec<&str> = text.split_whitespace().collect();
        let perr = |m: String| MeshError::parse(path, line, m);
        if line == 1 {
            if text != "ply" {
                return Err(perr(format!(
                    "not a PLY file: first line must be 'ply', got {:?}",
                    &text[..text.len().min(40)]
                )));
            }
            continue;
        }
        match toks.first().copied() {
            None => {}
            Some("format") => {
                fmt = Some(match toks.get(1).copied() {
                    Some("ascii") => Format::Ascii,
                    Some("binary_little_endian") => Format::Le,
                    Some("binary_big_endian") => Format::Be,
                    other => return Err(perr(format!("unknown PLY format {other:?}"))),
                });
            }
            Some("comment") | Some("obj_info")
                if toks.get(1).map(|t| t.eq_ignore_ascii_case("texturefile")) == Some(true)
                    && toks.len() > 2 =>
            {
                texture_file = Some((toks[2..].join(" "), line));
            }
            Some("comment") | Some("obj_info") => {}
            Some("element") => {
                let (Some(name), Some(count)) = (
                    toks.get(1),
                    toks.get(2).and_then(|c| c.parse::<usize>().ok()),
                ) else {
                    return Err(perr(format!("bad element line {text:?}")));
                };
                elems.push(Element {
                    name: name.to_string(),
                    count,
                    props: Vec::new(),
                });
            }
            Some("property") => {
                let Some(el) = elems.last_mut() else {
                    return Err(perr("'property' before any 'element'".into()));
                };
                let prop = if toks.get(1) == Some(&"list") {
                    match (
                        toks.get(2).and_then(|t| Ty::parse(t)),
                        toks.get(3).and_then(|t| Ty::parse(t)),
                        toks.get(4),
                    ) {
                        (Some(c), Some(t), Some(n)) if !matches!(c, Ty::F32 | Ty::F64) => Prop {
                            name: n.to_string(),
                            ty: t,
                            list: Some(c),
                        },
                        _ => return Err(perr(format!("bad list property {text:?}"))),
                    }
                } else {
                    match (toks.get(1).and_then(|t| Ty::parse(t)), toks.get(2)) {
                        (Some(t), Some(n)) => Prop {
                            name: n.to_string(),
                            ty: t,
                            list: None,
                        },
                        _ => return Err(perr(format!("bad property {text:?}"))),
                    }
                };
                el.props.push(prop);
            }
            Some("end_header") => {
                saw_end = true;
                break;
            }
            Some(other) => return Err(perr(format!("unknown header keyword {other:?}"))),
        }
    }
    if !saw_end {
        return Err(MeshError::parse(path, line, "missing 'end_header'"));
    }
    let fmt = fmt.ok_or_else(|| MeshError::parse(path, line, "missing 'format' line"))?;
    let mut src = Src {
        data,
        pos,
        fmt,
        line: line + 1,
        path,
    };
    // Counts come from the header and cannot be trusted: cap preallocation by the bytes left.
    let cap = |n: usize| n.min(data.len() / 3 + 1);

    let mut mesh = Mesh::default();
    let mut colors: Vec<[f32; 3]> = Vec::new();
    let mut normals: Vec<[f32; 3]> = Vec::new();
    let mut vuvs: Vec<[f32; 2]> = Vec::new();
    let mut corner_uvs: Vec<[f32; 2]> = Vec::new();
    let mut has_corner_uv = true;
    let mut saw_vertex = false;
    let mut poly: Vec<u32> = Vec::new();
    let mut tc: Vec<f32> = Vec::new();
    for el in &elems {
        if el.name == "vertex" {
            saw_vertex = true;
            let find = |names: &[&str]| {
                el.props
                    .iter()
                    .position(|p| p.list.is_none() && names.contains(&p.name.as_str()))
            };
            let xyz = [find(&["x"]), find(&["y"]), find(&["z"])];
            let [Some(ix), Some(iy), Some(iz)] = xyz else {
                return Err(MeshError::parse(
                    path,
                    line,
                    "vertex element needs x, y and z properties",
                ));
            };
            let nrm = [find(&["nx"]), find(&["ny"]), find(&["nz"])];
            let col = [
                find(&["red", "r", "diffuse_red"]),
                find(&["green", "g", "diffuse_green"]),
                find(&["blue", "b", "diffuse_blue"]),
            ];
            let uv = [
                find(&["s", "u", "texture_u", "texture_s", "tx"]),
                find(&["t", "v", "texture_v", "texture_t", "ty"]),
            ];
            let has_n = nrm.iter().all(Option::is_some);
            let has_c = col.iter().all(Option::is_some);
            let has_uv = uv.iter().all(Option::is_some);
            mesh.vertices.reserve(cap(el.count));
            let mut vals = vec![0f64; el.props.len()];
            for _ in 0..el.count {
                for (k, p) in el.props.iter().enumerate() {
                    match p.list {
                        None => vals[k] = src.read(p.ty)?,
                        Some(ct) => {
                            let n = src.read(ct)?;
                            if n < 0.0 {
                                return Err(src.err("negative list length"));
                            }
                            for _ in 0..n as usize {
                                src.read(p.ty)?;
                            }
                        }
                    }
                }
                let v = [vals[ix] as f32, vals[iy] as f32, vals[iz] as f32];
                if !v.iter().all(|x| x.is_finite()) {
                    return Err(src.err(format!(
                        "vertex {} position is not finite",
                        mesh.vertices.len()
                    )));
                }
                mesh.vertices.push(v);
                if has_n {
                    normals.push(nrm.map(|i| vals[i.unwrap()] as f32));
                }
                if has_c {
                    colors.push(col.map(|i| {
                        let i = i.unwrap();
                        (vals[i] * el.props[i].ty.color_scale()) as f32
                    }));
                }
                if has_uv {
                    vuvs.push(uv.map(|i| vals[i.unwrap()] as f32));
                }
            }
            if has_n {
                mesh.normals = Some(std::mem::take(&mut normals));
            }
            if has_c {
                mesh.colors = Some(std::mem::take(&mut colors));
            }
            if has_uv {
                mesh.uv_faces = None;
                mesh.uvs = Some(std::mem::take(&mut vuvs));
            }
        } else if el.name == "face" {
            if !saw_vertex {
                return Err(MeshError::parse(
                    path,
                    line,
                    "face element before vertex element",
                ));
            }
            let vi = el.props.iter().position(|p| {
                p.list.is_some() && (p.name == "vertex_indices" || p.name == "vertex_index")
            });
            let Some(vi) = vi else {
                return Err(MeshError::parse(
                    path,
                    line,
                    "face element needs a 'vertex_indices' list property",
                ));
            };
            let ti = el
                .props
                .iter()
                .position(|p| p.list.is_some() && p.name == "texcoord");
            has_corner_uv &= ti.is_some();
            let nv = mesh.vertices.len();
            mesh.faces.reserve(cap(el.count));
            for fi in 0..el.count {
                poly.clear();
                tc.clear();
                for (k, p) in el.props.iter().enumerate() {
                    match p.list {
                        None => {
                            src.read(p.ty)?;
                        }
                        Some(ct) => {
                            let n = src.read(ct)?;
                            if n < 0.0 || n > (1 << 24) as f64 {
                                return Err(src.err(format!("face {fi}: bad list length {n}")));
                            }
                            for _ in 0..n as usize {
                                let x = src.read(p.ty)?;
                                if k == vi {
                                    if x < 0.0 || x >= nv as f64 {
                                        return Err(src.err(format!(
                                            "face {fi}: vertex index {x} out of range (0..{nv})"
                                        )));
                                    }
                                    poly.push(x as u32);
                                } else if Some(k) == ti {
                                    tc.push(x as f32);
                                }
                            }
                        }
                    }
                }
                if poly.len() < 3 {
                    return Err(src.err(format!(
                        "face {fi}: needs at least 3 vertices, got {}",
                        poly.len()
                    )));
                }
                let corner_ok = ti.is_some() && tc.len() == 2 * poly.len();
                has_corner_uv &= corner_ok;
                for i in 1..poly.len() - 1 {
                    mesh.faces.push([poly[0], poly[i], poly[i + 1]]);
                    if corner_ok {
                        for c in [0, i, i + 1] {
                            corner_uvs.push([tc[2 * c], tc[2 * c + 1]]);
                        }
                    }
                }
            }
        } else {
            // Unknown element (edge, material, ...): read and discard to stay in sync.
            if el.props.is_empty() {
                continue; // nothing to read (and a huge count must not spin)
            }
            for _ in 0..el.count {
                for p in &el.props {
                    match p.list {
                        None => {
                            src.read(p.ty)?;
                        }
                        Some(ct) => {
                            let n = src.read(ct)?;
                            if n < 0.0 {
                                return Err(src.err("negative list length"));
                            }
                            for _ in 0..n as usize {
                                src.read(p.ty)?;
                            }
                        }
                    }
                }
            }
        }
    }
    if !saw_vertex {
        return Err(MeshError::parse(path, line, "no vertex element"));
    }
    if mesh.uvs.is_some() {
        mesh.uv_faces = Some(mesh.faces.clone());
    } else if has_corner_uv && !mesh.faces.is_empty() && corner_uvs.len() == 3 * mesh.faces.len() {
        mesh.uv_faces = Some(
            (0..mesh.faces.len() as u32)
                .map(|f| [3 * f, 3 * f + 1, 3 * f + 2])
                .collect(),
        );
        mesh.uvs = Some(corner_uvs);
    }
    if mesh
        .uvs
        .as_ref()
        .is_some_and(|u| u.iter().any(|t| !t[0].is_finite() || !t[1].is_finite()))
    {
        return Err(MeshError::parse(
            path,
            line,
            "texture coordinates are not finite",
        ));
    }
    let mut warnings = Vec::new();
    if let Some((tf, tline)) = texture_file {
        // Read like an OBJ texture map: inside the mesh's folder unless allowed; unreadable → a warning.
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let site = Site {
            src: path,
            line: tline,
            what: "TextureFile",
        };
        match Refs::new(path, opts).texture(&tf, &dir, site, true) {
            Ok(t) => {
                mesh.material = Some(Material {
                    base_color_texture: Some(t),
                    ..Default::default()
                })
            }
            Err(e @ MeshError::Limit { .. }) => return Err(e),
            Err(e @ MeshError::Refused { .. }) => warnings.push(format!("{e} (texture dropped)")),
            Err(e) => warnings.push(format!(
                "{}: TextureFile {tf:?} not loaded: {e}",
                path.display()
            )),
        }
    }
    Ok(Loaded { mesh, warnings })
}

/// Writes binary little-endian PLY: float x y z [nx ny nz] [uchar red green blue] [float s t] and
/// `list uchar int vertex_indices`. Vertices are split where one position has several UVs. A base-colour
/// texture is written as `<stem>_kd.png` and named in a `comment TextureFile` line (MeshLab convention).
pub fn write_ply(mesh: &Mesh, path: &Path) -> Result<()> {
    mesh.validate("save_mesh")?;
    let (vmap, faces) = split_by_uv(mesh);
    let mut out: Vec<u8> = Vec::new();
    let mut h = String::from(
        "ply\nformat binary_little_endian 1.0\ncomment written by pgc-fast rust_mesh\n",
    );
    let tex = mesh
        .material
        .as_ref()
        .and_then(|m| m.base_color_texture.as_ref());
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mesh".into());
    if let Some(t) = tex {
        let name = format!("{stem}_kd.png");
        write_png(
            t,
            &path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
                .join(&name),
        )?;
        h += &format!("comment TextureFile {name}\n");
    }
    h += &format!(
        "element vertex {}\nproperty float x\nproperty float y\nproperty float z\n",
        vmap.len()
    );
    if mesh.normals.is_some() {
        h += "property float nx\nproperty float ny\nproperty float nz\n";
    }
    if mesh.colors.is_some() {
        h += "property uchar red\nproperty uchar green\nproperty uchar blue\n";
    }
    if mesh.uvs.is_some() {
        h += "property float s\nproperty float t\n";
    }
    h += &format!(
        "element face {}\nproperty list uchar int vertex_indices\nend_header\n",
        faces.len()
    );
    out.extend_from_slice(h.as_bytes());
    for &(p, t) in &vmap {
        let p = p as usize;
        for x in mesh.vertices[p] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        if let Some(n) = &mesh.normals {
            for x in n[p] {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        if let Some(c) = &mesh.colors {
            for x in c[p] {
                out.push(if x.is_nan() {
                    0
                } else {
                    (x.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
                });
            }
        }
        if let Some(uv) = &mesh.uvs {
            for x in uv[t as usize] {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    for f in &faces {
        out.push(3);
        for &i in f {
            out.extend_from_slice(&(i as i32).to_le_bytes());
        }
    }
    std::fs::write(path, out).map_err(|e| MeshError::io(path, e))
}
