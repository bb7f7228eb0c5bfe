//! glTF 2.0 reader (GLB and .gltf with embedded `data:` or external buffers/images) and GLB writer.
//!
//! The writer emits one node, one mesh, one triangle primitive: POSITION (with min/max), NORMAL,
//! TEXCOORD_0 (v flipped: glTF's origin is the image's top-left, ours is OBJ's bottom-left), COLOR_0
//! (float VEC3), u32 indices, and a metallic-roughness material whose textures are embedded PNGs.
//! The reader walks the default scene (node matrices / TRS applied), concatenates every triangle
//! primitive, and keeps the first material it meets. Every malformed input is an error naming the file
//! and, for container problems, the byte offset.
use super::obj::Loaded;
use super::refs::{read_mesh_file, LoadOptions, Refs, Site};
use super::split_by_uv;
use super::texture::{decode_image, encode_png};
use crate::mesh::{Material, Mesh, Texture};
use crate::{MeshError, Result};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

const GLB_MAGIC: u32 = 0x4654_6C67; // "glTF"
const CHUNK_JSON: u32 = 0x4E4F_534A;
const CHUNK_BIN: u32 = 0x004E_4942;

// ------------------------------------------------------------------------------------------------
// writer

struct BinBuilder {
    bin: Vec<u8>,
    views: Vec<Value>,
    accessors: Vec<Value>,
}

impl BinBuilder {
    fn align4(&mut self) {
        while !self.bin.len().is_multiple_of(4) {
            self.bin.push(0);
        }
    }
    fn view(&mut self, bytes: &[u8], target: Option<u32>) -> usize {
        self.align4();
        let mut v = json!({"buffer": 0, "byteOffset": self.bin.len(), "byteLength": bytes.len()});
        if let Some(t) = target {
            v["target"] = json!(t);
        }
        self.bin.extend_from_slice(bytes);
        self.views.push(v);
        self.views.len() - 1
    }
    fn float_accessor(&mut self, data: &[f32], width: usize, minmax: bool) -> usize {
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        let view = self.view(&bytes, Some(34962));
        let ty = ["SCALAR", "VEC2", "VEC3", "VEC4"][width - 1];
        let mut a = json!({"bufferView": view, "componentType": 5126, "count": data.len() / width, "type": ty});
        if minmax {
            let mut lo = vec![f32::INFINITY; width];
            let mut hi = vec![f32::NEG_INFINITY; width];
            for c in data.chunks_exact(width) {
                for k in 0..width {
                    lo[k] = lo[k].min(c[k]);
                    hi[k] = hi[k].max(c[k]);
                }
            }
            if data.is_empty() {
                lo.fill(0.0);
                hi.fill(0.0);
            }
            a["min"] = json!(lo);
            a["max"] = json!(hi);
        }
        self.accessors.push(a);
        self.accessors.len() - 1
    }
}

pub fn glb_bytes(mesh: &Mesh) -> Result<Vec<u8>> {
    mesh.validate("save_mesh")?;
    let (vmap, faces) = split_by_uv(mesh);
    let mut b = BinBuilder {
        bin: Vec::new(),
        views: Vec::new(),
        accessors: Vec::new(),
    };
    let pos: Vec<f32> = vmap
        .iter()
        .flat_map(|&(p, _)| mesh.vertices[p as usize])
        .collect();
    let mut attrs = serde_json::Map::new();
    attrs.insert("POSITION".into(), json!(b.float_accessor(&pos, 3, true)));
    if let Some(n) = &mesh.normals {
        // glTF requires unit normals; zero normals (isolated vertices) get +Z.
        let data: Vec<f32> = vmap
            .iter()
            .flat_map(|&(p, _)| {
                let v = n[p as usize];
                let l = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
                if l > 1e-12 && l.is_finite() {
                    [v[0] / l, v[1] / l, v[2] / l]
                } else {
                    [0.0, 0.0, 1.0]
                }
            })
            .collect();
        attrs.insert("NORMAL".into(), json!(b.float_accessor(&data, 3, false)));
        if let Some(t) = tangent_attribute(mesh, n, &vmap, &faces) {
            attrs.insert("TANGENT".into(), json!(b.float_accessor(&t, 4, false)));
        }
    }
    if let Some(uv) = &mesh.uvs {
        let data: Vec<f32> = vmap
            .iter()
            .flat_map(|&(_, t)| [uv[t as usize][0], 1.0 - uv[t as usize][1]])
            .collect();
        attrs.insert(
            "TEXCOORD_0".into(),
            json!(b.float_accessor(&data, 2, false)),
        );
    }
    if let Some(c) = &mesh.colors {
        let data: Vec<f32> = vmap
            .iter()
            .flat_map(|&(p, _)| c[p as usize].map(|x| x.clamp(0.0, 1.0)))
            .collect();
        attrs.insert("COLOR_0".into(), json!(b.float_accessor(&data, 3, false)));
    }
    let idx: Vec<u8> = faces
        .iter()
        .flatten()
        .flat_map(|i| i.to_le_bytes())
        .collect();
    let iview = b.view(&idx, Some(34963));
    b.accessors.push(json!({"bufferView": iview, "componentType": 5125, "count": faces.len() * 3, "type": "SCALAR"}));
    let iacc = b.accessors.len() - 1;

    let mut prim = json!({"attributes": attrs, "indices": iacc, "mode": 4});
    let mut root = json!({
        "asset": {"version": "2.0", "generator": format!("pgc-fast rust_mesh {}", crate::version())},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "mesh"}],
    });
    if let Some(m) = &mesh.material {
        let mut images = Vec::new();
        let mut textures = Vec::new();
        let mut add_tex = |t: &Texture, b: &mut BinBuilder| -> Result<usize> {
            let png = encode_png(t)?;
            let view = b.view(&png, None);
            images.push(json!({"bufferView": view, "mimeType": "image/png"}));
            textures.push(json!({"source": images.len() - 1, "sampler": 0}));
            Ok(textures.len() - 1)
        };
        let mut pbr = json!({
            "baseColorFactor": m.base_color_factor,
            "metallicFactor": m.metallic_factor,
            "roughnessFactor": m.roughness_factor,
        });
        let mut mat = json!({"name": m.name, "doubleSided": true});
        if let Some(t) = &m.base_color_texture {
            pbr["baseColorTexture"] = json!({"index": add_tex(t, &mut b)?});
        }
        if let Some(t) = &m.metallic_roughness_texture {
            pbr["metallicRoughnessTexture"] = json!({"index": add_tex(t, &mut b)?});
        }
        if let Some(t) = &m.normal_texture {
            mat["normalTexture"] = json!({"index": add_tex(t, &mut b)?});
        }
        if let Some(t) = &m.occlusion_texture {
            mat["occlusionTexture"] = json!({"index": add_tex(t, &mut b)?});
        }
        mat["pbrMetallicRoughness"] = pbr;
        root["materials"] = json!([mat]);
        prim["material"] = json!(0);
        if !textures.is_empty() {
            root["images"] = json!(images);
            root["textures"] = json!(textures);
            // LINEAR_MIPMAP_LINEAR / LINEAR, clamp-free repeat like most exporters.
            root["samplers"] =
                json!([{"magFilter": 9729, "minFilter": 9987, "wrapS": 10497, "wrapT": 10497}]);
        }
    }
    root["meshes"] = json!([{"primitives": [prim], "name": "mesh"}]);
    b.align4();
    root["buffers"] = json!([{"byteLength": b.bin.len()}]);
    root["bufferViews"] = json!(b.views);
    root["accessors"] = json!(b.accessors);

    let mut js =
        serde_json::to_vec(&root).map_err(|e| MeshError::Invalid(format!("save_mesh(): {e}")))?;
    while js.len() % 4 != 0 {
        js.push(b' ');
    }
    let total = 12 + 8 + js.len() + 8 + b.bin.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&GLB_MAGIC.to_le_bytes());
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(&(js.len() as u32).to_le_bytes());
    out.extend_from_slice(&CHUNK_JSON.to_le_bytes());
    out.extend_from_slice(&js);
    out.extend_from_slice(&(b.bin.len() as u32).to_le_bytes());
    out.extend_from_slice(&CHUNK_BIN.to_le_bytes());
    out.extend_from_slice(&b.bin);
    Ok(out)
}

/// glTF `TANGENT` (xyz unit, w = ±1 handedness) of the split vertices when the material has a normal map and
/// the mesh has UVs: the same frames the renderer shades with (`crate::tangent`), so a viewer reads the
/// normal map in the space it was baked in.
fn tangent_attribute(
    mesh: &Mesh,
    normals: &[[f32; 3]],
    vmap: &[(u32, u32)],
    faces: &[[u32; 3]],
) -> Option<Vec<f32>> {
    let has_map = mesh.material.as_ref()?.normal_texture.is_some();
    let uvs = mesh.uvs.as_ref().filter(|_| has_map)?;
    let t = crate::tangent::tangents(&mesh.vertices, normals, uvs, vmap, faces);
    Some(t.tangents.into_iter().flatten().collect())
}

pub fn write_glb(mesh: &Mesh, path: &Path) -> Result<()> {
    let bytes = glb_bytes(mesh)?;
    std::fs::write(path, bytes).map_err(|e| MeshError::io(path, e))
}

// ------------------------------------------------------------------------------------------------
// reader

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' | b'\n' | b'\r' | b' ' => continue,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Decodes `%XX` escapes (glTF URIs are RFC 3986 references); `None` for a malformed escape or non-UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The URI's scheme (`http`, `file`, ...) if it has one; a one-letter "scheme" is a Windows drive.
fn uri_scheme(uri: &str) -> Option<&str> {
    let end = uri.find(':')?;
    let s = &uri[..end];
    let ok = s.len() > 1
        && s.as_bytes()[0].is_ascii_alphabetic()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    ok.then_some(s)
}

struct Doc<'a> {
    path: &'a Path,
    dir: std::path::PathBuf,
    root: Value,
    buffers: Vec<Rc<[u8]>>,
    refs: RefCell<Refs>,
}

impl<'a> Doc<'a> {
    fn err(&self, msg: impl Into<String>) -> MeshError {
        MeshError::parse(self.path, 0, msg)
    }
    fn arr(&self, key: &str) -> &[Value] {
        self.root
            .get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
    fn get(&self, key: &str, i: usize) -> Result<&Value> {
        self.arr(key).get(i).ok_or_else(|| {
            self.err(format!(
                "{key}[{i}] does not exist ({} entries)",
                self.arr(key).len()
            ))
        })
    }
    /// The bytes a buffer or image URI names (`what` is e.g. `buffers[2].uri`): a base64 `data:` URI, or a
    /// file under the reference policy of `refs.rs` (relative, inside the mesh's folder, regular, read once).
    fn uri_bytes(&self, uri: &str, what: &str) -> Result<Rc<[u8]>> {
        let site = Site {
            src: self.path,
            line: 0,
            what,
        };
        let mut refs = self.refs.borrow_mut();
        if let Some(rest) = uri.strip_prefix("data:") {
            let (_, payload) = rest
                .split_once(";base64,")
                .ok_or_else(|| self.err("only base64 data: URIs are supported"))?;
            let bytes =
                base64_decode(payload).ok_or_else(|| self.err("bad base64 in data: URI"))?;
            refs.charge(bytes.len() as u64, site)?;
            return Ok(bytes.into());
        }
        let short = uri.char_indices().nth(200).map_or(uri, |(i, _)| &uri[..i]);
        if let Some(s) = uri_scheme(uri).filter(|s| !s.eq_ignore_ascii_case("file")) {
            return Err(site.refuse(
                short,
                format!("{s}: URIs are not supported (only relative file names and data: URIs)"),
            ));
        }
        let name =
            percent_decode(uri).ok_or_else(|| site.refuse(short, "malformed %-escape in URI"))?;
        refs.fetch(&name, &self.dir, site)
    }
    fn view_bytes(&self, vi: usize) -> Result<(&[u8], usize)> {
        let v = self.get("bufferViews", vi)?;
        let bi = uget(v, "buffer")
            .ok_or_else(|| self.err(format!("bufferViews[{vi}] has no buffer")))?;
        let buf = self
            .buffers
            .get(bi)
            .ok_or_else(|| self.err(format!("bufferViews[{vi}]: buffer {bi} does not exist")))?;
        let off = uget(v, "byteOffset").unwrap_or(0);
        let len = uget(v, "byteLength")
            .ok_or_else(|| self.err(format!("bufferViews[{vi}] has no byteLength")))?;
        let end = off
            .checked_add(len)
            .filter(|&e| e <= buf.len())
            .ok_or_else(|| {
                self.err(format!(
                    "bufferViews[{vi}] (offset {off}, length {len}) exceeds buffer {bi} ({} bytes)",
                    buf.len()
                ))
            })?;
        Ok((&buf[off..end], uget(v, "byteStride").unwrap_or(0)))
    }
    /// Reads an accessor as f32 rows of `width` components (normalised integers mapped to [0, 1]).
    fn accessor_f32(&self, ai: usize, widths: &[usize]) -> Result<(Vec<f32>, usize)> {
        let a = self.get("accessors", ai)?;
        let e = |m: String| self.err(format!("accessors[{ai}]: {m}"));
        if a.get("sparse").is_some() {
            return Err(e("sparse accessors are not supported".into()));
        }
        let count = uget(a, "count").ok_or_else(|| e("missing count".into()))?;
        let ct = uget(a, "componentType").ok_or_else(|| e("missing componentType".into()))?;
        let width = match a.get("type").and_then(Value::as_str) {
            Some("SCALAR") => 1,
            Some("VEC2") => 2,
            Some("VEC3") => 3,
            Some("VEC4") => 4,
            t => return Err(e(format!("unsupported type {t:?}"))),
        };
        if !widths.contains(&width) {
            return Err(e(format!("expected {widths:?} components, got {width}")));
        }
        let (csize, norm_div): (usize, f32) = match ct {
            5120 => (1, 127.0),
            5121 => (1, 255.0),
            5122 => (2, 32767.0),
            5123 => (2, 65535.0),
            5125 => (4, 4294967295.0),
            5126 => (4, 1.0),
            _ => return Err(e(format!("bad componentType {ct}"))),
        };
        let normalized = a
            .get("normalized")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let Some(vi) = uget(a, "bufferView") else {
            // Spec: no bufferView means zeros. Cap the count so a tiny file cannot demand gigabytes.
            if count > 1 << 24 {
                return Err(e(format!(
                    "count {count} without a bufferView is implausible"
                )));
            }
            return Ok((vec![0.0; count * width], width));
        };
        let (bytes, stride) = self.view_bytes(vi)?;
        let off = uget(a, "byteOffset").unwrap_or(0);
        let elem = csize * width;
        let stride = if stride == 0 { elem } else { stride };
        if count > 0 {
            let need = off
                .checked_add(
                    (count - 1)
                        .checked_mul(stride)
                        .ok_or_else(|| e("count overflow".into()))?,
                )
                .and_then(|x| x.checked_add(elem));
            if need.is_none_or(|n| n > bytes.len()) {
                return Err(e(format!("{count} elements (stride {stride}, offset {off}) exceed bufferView {vi} ({} bytes)", bytes.len())));
            }
        }
        let mut out = Vec::with_capacity(count * width);
        for i in 0..count {
            let base = off + i * stride;
            for k in 0..width {
                let p = base + k * csize;
                let b = &bytes[p..p + csize];
                let x = match ct {
                    5120 => b[0] as i8 as f32,
                    5121 => b[0] as f32,
                    5122 => i16::from_le_bytes([b[0], b[1]]) as f32,
                    5123 => u16::from_le_bytes([b[0], b[1]]) as f32,
                    5125 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
                    _ => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                };
                out.push(if normalized && ct != 5126 {
                    (x / norm_div).max(-1.0)
                } else {
                    x
                });
            }
        }
        Ok((out, width))
    }
    fn accessor_indices(&self, ai: usize) -> Result<Vec<u32>> {
        let a = self.get("accessors", ai)?;
        let ct = uget(a, "componentType").unwrap_or(0);
        if !matches!(ct, 5121 | 5123 | 5125) {
            return Err(self.err(format!(
                "accessors[{ai}]: indices must be unsigned integers, got componentType {ct}"
            )));
        }
        // u32 indices above 2^24 lose precision through f32: read them exactly.
        let (vi, count) = (uget(a, "bufferView"), uget(a, "count").unwrap_or(0));
        if ct == 5125 {
            if let Some(vi) = vi {
                let (bytes, stride) = self.view_bytes(vi)?;
                let off = uget(a, "byteOffset").unwrap_or(0);
                let stride = if stride == 0 { 4 } else { stride };
                if count > 0
                    && off
                        .checked_add((count - 1).saturating_mul(stride))
                        .and_then(|x| x.checked_add(4))
                        .is_none_or(|n| n > bytes.len())
                {
                    return Err(self.err(format!(
                        "accessors[{ai}]: {count} indices exceed bufferView {vi}"
                    )));
                }
                return Ok((0..count)
                    .map(|i| {
                        let p = off + i * stride;
                        u32::from_le_bytes([bytes[p], bytes[p + 1], bytes[p + 2], bytes[p + 3]])
                    })
                    .collect());
            }
        }
        Ok(self
            .accessor_f32(ai, &[1])?
            .0
            .into_iter()
            .map(|x| x as u32)
            .collect())
    }
    fn texture(&self, info: Option<&Value>, force_color: bool) -> Result<Option<Texture>> {
        let Some(ti) = info.and_then(|i| uget(i, "index")) else {
            return Ok(None);
        };
        let t = self.get("textures", ti)?;
        let Some(si) = uget(t, "source") else {
            return Ok(None);
        };
        let img = self.get("images", si)?;
        let max_pixels = self.refs.borrow().limits().max_image_pixels;
        let decode =
            |bytes: &[u8]| decode_image(bytes, self.path, force_color, max_pixels).map(Some);
        let r = if let Some(vi) = uget(img, "bufferView") {
            decode(self.view_bytes(vi)?.0)
        } else if let Some(uri) = img.get("uri").and_then(Value::as_str) {
            decode(&self.uri_bytes(uri, &format!("images[{si}].uri"))?)
        } else {
            return Err(self.err(format!("images[{si}] has neither bufferView nor uri")));
        };
        r.map_err(|e| match e {
            MeshError::Limit { path, line, msg } => MeshError::Limit {
                path,
                line,
                msg: format!("images[{si}]: {msg}"),
            },
            e => e,
        })
    }
    /// A texture that cannot be read (missing file, undecodable image, e.g. WebP) is dropped with a warning
    /// rather than failing the whole load: the geometry is what matters most.
    fn texture_or_warn(
        &self,
        info: Option<&Value>,
        what: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Texture>> {
        match self.texture(info, true) {
            Ok(t) => Ok(t),
            // An exceeded limit fails the load; anything else (missing, undecodable, refused by the path
            // policy) drops the texture with a warning, as broken texture references are common.
            Err(e @ MeshError::Limit { .. }) => Err(e),
            Err(e @ MeshError::Refused { .. }) => {
                warnings.push(format!("{e} ({what} texture dropped)"));
                Ok(None)
            }
            Err(e) => {
                warnings.push(format!(
                    "{}: {what} texture dropped: {e}",
                    self.path.display()
                ));
                Ok(None)
            }
        }
    }
    fn material(&self, mi: usize, warnings: &mut Vec<String>) -> Result<Material> {
        let m = self.get("materials", mi)?;
        let pbr = m.get("pbrMetallicRoughness");
        let num = |v: Option<&Value>, d: f32| v.and_then(Value::as_f64).map_or(d, |x| x as f32);
        let mut out = Material {
            name: m
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("material0")
                .to_string(),
            metallic_factor: num(pbr.and_then(|p| p.get("metallicFactor")), 1.0),
            roughness_factor: num(pbr.and_then(|p| p.get("roughnessFactor")), 1.0),
            ..Default::default()
        };
        if let Some(f) = pbr
            .and_then(|p| p.get("baseColorFactor"))
            .and_then(Value::as_array)
        {
            for (k, x) in f.iter().take(4).enumerate() {
                out.base_color_factor[k] = num(Some(x), 1.0);
            }
        }
        out.base_color_texture = self.texture_or_warn(
            pbr.and_then(|p| p.get("baseColorTexture")),
            "base colour",
            warnings,
        )?;
        out.metallic_roughness_texture = self.texture_or_warn(
            pbr.and_then(|p| p.get("metallicRoughnessTexture")),
            "metallic-roughness",
            warnings,
        )?;
        out.normal_texture = self.texture_or_warn(m.get("normalTexture"), "normal", warnings)?;
        out.occlusion_texture =
            self.texture_or_warn(m.get("occlusionTexture"), "occlusion", warnings)?;
        Ok(out)
    }
}

fn uget(v: &Value, key: &str) -> Option<usize> {
    v.get(key).and_then(Value::as_u64).map(|x| x as usize)
}

type Mat4 = [[f64; 4]; 4]; // column-major like glTF: m[col][row]

fn mat_mul(a: &Mat4, b: &Mat4) -> Mat4 {
    let mut r = [[0.0; 4]; 4];
    for c in 0..4 {
        for rr in 0..4 {
            r[c][rr] = (0..4).map(|k| a[k][rr] * b[c][k]).sum();
        }
    }
    r
}

fn node_matrix(n: &Value) -> Mat4 {
    if let Some(m) = n
        .get("matrix")
        .and_then(Value::as_array)
        .filter(|m| m.len() == 16)
    {
        let mut r = [[0.0; 4]; 4];
        for (i, x) in m.iter().enumerate() {
            r[i / 4][i % 4] = x.as_f64().unwrap_or(0.0);
        }
        return r;
    }
    let g = |k: &str, d: &[f64]| -> Vec<f64> {
        n.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|x| x.as_f64().unwrap_or(0.0)).collect())
            .filter(|v: &Vec<f64>| v.len() == d.len())
            .unwrap_or_else(|| d.to_vec())
    };
    let t = g("translation", &[0.0; 3]);
    let q = g("rotation", &[0.0, 0.0, 0.0, 1.0]);
    let s = g("scale", &[1.0; 3]);
    let (x, y, z, w) = (q[0], q[1], q[2], q[3]);
    let rot = [
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y + z * w),
            2.0 * (x * z - y * w),
        ],
        [
            2.0 * (x * y - z * w),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z + x * w),
        ],
        [
            2.0 * (x * z + y * w),
            2.0 * (y * z - x * w),
            1.0 - 2.0 * (x * x + y * y),
        ],
    ];
    let mut r = [[0.0; 4]; 4];
    for c in 0..3 {
        for rr in 0..3 {
            r[c][rr] = rot[c][rr] * s[c];
        }
    }
    r[3] = [t[0], t[1], t[2], 1.0];
    r
}

pub fn read_gltf(path: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let data = read_mesh_file(path)?;
    parse_gltf(&data, path, opts)
}

/// Splits a GLB into its JSON and first BIN chunk; a .gltf file is all JSON.
fn split_glb<'d>(data: &'d [u8], path: &Path) -> Result<(&'d [u8], Option<&'d [u8]>)> {
    let at = |o: usize, m: &str| MeshError::parse_at(path, o, m.to_string());
    let rd = |o: usize| -> Result<u32> {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| at(o, "unexpected end of file"))
    };
    if data.len() < 4 || rd(0)? != GLB_MAGIC {
        return Ok((data, None));
    }
    let version = rd(4)?;
    if version != 2 {
        return Err(at(4, &format!("GLB version must be 2, got {version}")));
    }
    let total = rd(8)? as usize;
    if total > data.len() {
        return Err(at(
            8,
            &format!("header says {total} bytes, file has {}", data.len()),
        ));
    }
    let jlen = rd(12)? as usize;
    if rd(16)? != CHUNK_JSON {
        return Err(at(16, "first chunk must be JSON"));
    }
    let jend = 20usize
        .checked_add(jlen)
        .filter(|&e| e <= total)
        .ok_or_else(|| at(12, "JSON chunk exceeds the file"))?;
    let mut bin = None;
    let mut o = (jend + 3) & !3;
    while o + 8 <= total {
        let len = rd(o)? as usize;
        let ty = rd(o + 4)?;
        let end = (o + 8)
            .checked_add(len)
            .filter(|&e| e <= total)
            .ok_or_else(|| at(o, "chunk exceeds the file"))?;
        if ty == CHUNK_BIN && bin.is_none() {
            bin = Some(&data[o + 8..end]);
        }
        o = (end + 3) & !3;
    }
    Ok((&data[20..jend], bin))
}

impl Doc<'_> {
    /// Reads every buffer (a file named by several buffers is read once; see `Refs`).
    fn load_buffers(&mut self, bin: Option<&[u8]>) -> Result<()> {
        let nbuf = self.arr("buffers").len();
        for i in 0..nbuf {
            let what = format!("buffers[{i}].uri");
            self.refs.borrow_mut().count(
                "glTF buffer",
                Site {
                    src: self.path,
                    line: 0,
                    what: &what,
                },
            )?;
            let b = &self.arr("buffers")[i];
            let bytes = match b.get("uri").and_then(Value::as_str) {
                Some(uri) => self.uri_bytes(uri, &what)?,
                None if i == 0 => {
                    let bin = bin.ok_or_else(|| {
                        self.err("buffers[0] has no uri and the file has no BIN chunk")
                    })?;
                    self.refs.borrow_mut().charge(
                        bin.len() as u64,
                        Site {
                            src: self.path,
                            line: 0,
                            what: "BIN chunk",
                        },
                    )?;
                    Rc::from(bin)
                }
                None => return Err(self.err(format!("buffers[{i}] has no uri"))),
            };
            self.buffers.push(bytes);
        }
        Ok(())
    }

    /// (mesh index, world matrix) for every mesh instance of the default scene; without scenes, every mesh once.
    fn instances(&self) -> Result<Vec<(usize, Mat4)>> {
        let ident: Mat4 = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let scene = uget(&self.root, "scene").unwrap_or(0);
        let Some(sc) = self.arr("scenes").get(scene) else {
            return Ok((0..self.arr("meshes").len()).map(|i| (i, ident)).collect());
        };
        let mut todo: Vec<(usize, Mat4, usize)> = Vec::new();
        for n in sc
            .get("nodes")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let ni = n
                .as_u64()
                .ok_or_else(|| self.err("scene node ids must be integers"))?
                as usize;
            todo.push((ni, ident, 0));
        }
        let mut instances = Vec::new();
        let mut visits = 0usize;
        while let Some((ni, parent, depth)) = todo.pop() {
            visits += 1;
            if depth > 64 || visits > 1_000_000 {
                return Err(self.err(
                    "node hierarchy deeper than 64 levels or over 10^6 node instances (cycle?)",
                ));
            }
            let n = self.get("nodes", ni)?;
            let m = mat_mul(&parent, &node_matrix(n));
            if let Some(mi) = uget(n, "mesh") {
                instances.push((mi, m));
            }
            for c in n
                .get("children")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                todo.push((
                    c.as_u64()
                        .ok_or_else(|| self.err("child ids must be integers"))?
                        as usize,
                    m,
                    depth + 1,
                ));
            }
        }
        instances.reverse();
        Ok(instances)
    }

    fn accessor_count(&self, ai: usize) -> Result<usize> {
        uget(self.get("accessors", ai)?, "count")
            .ok_or_else(|| self.err(format!("accessors[{ai}]: missing count")))
    }

    /// An attribute accessor's count must match POSITION's; checked before its data is read.
    fn attribute(
        &self,
        a: usize,
        name: &str,
        nv: usize,
        widths: &[usize],
    ) -> Result<(Vec<f32>, usize)> {
        if self.accessor_count(a)? != nv {
            return Err(self.err(format!(
                "accessors[{a}]: {name} count differs from POSITION"
            )));
        }
        self.accessor_f32(a, widths)
    }

    /// Refuses a scene whose mesh instances would exceed the vertex or face limit, before any accessor is
    /// read: one small accessor instanced by many nodes can otherwise demand terabytes.
    fn check_scene_size(&self, instances: &[(usize, Mat4)]) -> Result<()> {
        let (mut nv, mut nidx) = (0usize, 0usize);
        for &(mi, _) in instances {
            let prims = self
                .get("meshes", mi)?
                .get("primitives")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for p in prims.iter().filter(|p| uget(p, "mode").unwrap_or(4) == 4) {
                // A missing POSITION or count is reported, with its place, when the primitive is read.
                let Some(v) = p
                    .get("attributes")
                    .and_then(|a| uget(a, "POSITION"))
                    .and_then(|a| self.accessor_count(a).ok())
                else {
                    continue;
                };
                let i = uget(p, "indices")
                    .and_then(|a| self.accessor_count(a).ok())
                    .unwrap_or(v);
                nv = nv.saturating_add(v);
                nidx = nidx.saturating_add(i);
            }
        }
        let l = *self.refs.borrow().limits();
        let refuse = |what: &str, n: usize, max: usize| {
            MeshError::limit(self.path, 0, format!("the scene's mesh instances hold {n} {what} in total, over the limit of {max} (each instance of a mesh counts)"))
        };
        if nv > l.max_vertices {
            return Err(refuse("vertices", nv, l.max_vertices));
        }
        if nidx / 3 > l.max_faces {
            return Err(refuse("faces", nidx / 3, l.max_faces));
        }
        Ok(())
    }
}

/// Per-vertex attributes gathered over every primitive; one missing on any primitive drops it everywhere.
struct Attrs {
    uvs: Vec<[f32; 2]>,
    normals: Vec<[f32; 3]>,
    colors: Vec<[f32; 3]>,
    all_uv: bool,
    all_n: bool,
    all_c: bool,
}

/// Appends one triangle primitive of mesh `mi` (world matrix `m`) to `mesh`.
fn add_primitive(
    doc: &Doc,
    mesh: &mut Mesh,
    at: &mut Attrs,
    p: &Value,
    m: &Mat4,
    tag: &str,
) -> Result<()> {
    let attrs = p
        .get("attributes")
        .ok_or_else(|| doc.err(format!("{tag} has no attributes")))?;
    let pa = uget(attrs, "POSITION").ok_or_else(|| doc.err(format!("{tag} has no POSITION")))?;
    let (pos, _) = doc.accessor_f32(pa, &[3])?;
    let nv = pos.len() / 3;
    let base = mesh.vertices.len() as u32;
    for c in pos.chunks_exact(3) {
        let (x, y, z) = (c[0] as f64, c[1] as f64, c[2] as f64);
        let v = [0, 1, 2].map(|r| (m[0][r] * x + m[1][r] * y + m[2][r] * z + m[3][r]) as f32);
        if !v.iter().all(|x| x.is_finite()) {
            return Err(doc.err(format!(
                "accessors[{pa}]: vertex {} is not finite",
                mesh.vertices.len() - base as usize
            )));
        }
        mesh.vertices.push(v);
    }
    let idx: Vec<u32> = match uget(p, "indices") {
        Some(ia) => doc.accessor_indices(ia)?,
        None => (0..nv as u32).collect(),
    };
    if !idx.len().is_multiple_of(3) {
        return Err(doc.err(format!(
            "{tag}: index count {} is not a multiple of 3",
            idx.len()
        )));
    }
    if let Some(&bad) = idx.iter().find(|&&i| i as usize >= nv) {
        return Err(doc.err(format!("{tag}: index {bad} out of range (0..{nv})")));
    }
    mesh.faces.extend(
        idx.chunks_exact(3)
            .map(|f| [f[0] + base, f[1] + base, f[2] + base]),
    );
    match uget(attrs, "TEXCOORD_0") {
        Some(a) if at.all_uv => {
            let (t, _) = doc.attribute(a, "TEXCOORD_0", nv, &[2])?;
            at.uvs.extend(t.chunks_exact(2).map(|c| [c[0], 1.0 - c[1]]));
        }
        _ => at.all_uv = false,
    }
    match uget(attrs, "NORMAL") {
        Some(a) if at.all_n => {
            let (t, _) = doc.attribute(a, "NORMAL", nv, &[3])?;
            // Normals transform by the inverse transpose; for rigid + uniform scale the upper
            // 3×3 followed by renormalisation is equivalent, and general cases are rare.
            at.normals.extend(t.chunks_exact(3).map(|c| {
                let v = [0, 1, 2]
                    .map(|r| m[0][r] * c[0] as f64 + m[1][r] * c[1] as f64 + m[2][r] * c[2] as f64);
                let l = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt().max(1e-30);
                v.map(|x| (x / l) as f32)
            }));
        }
        _ => at.all_n = false,
    }
    match uget(attrs, "COLOR_0") {
        Some(a) if at.all_c => {
            let (t, w) = doc.attribute(a, "COLOR_0", nv, &[3, 4])?;
            at.colors
                .extend(t.chunks_exact(w).map(|c| [c[0], c[1], c[2]]));
        }
        _ => at.all_c = false,
    }
    Ok(())
}

pub fn parse_gltf(data: &[u8], path: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let (json_bytes, bin) = split_glb(data, path)?;
    let root: Value = serde_json::from_slice(json_bytes)
        .map_err(|e| MeshError::parse(path, e.line(), format!("bad glTF JSON: {e}")))?;
    if !root.is_object() {
        return Err(MeshError::parse(path, 0, "glTF JSON must be an object"));
    }
    // Compressed geometry would otherwise read as zero-filled accessors: refuse it clearly.
    for ext in root
        .get("extensionsRequired")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let name = ext.as_str().unwrap_or("");
        if matches!(
            name,
            "KHR_draco_mesh_compression" | "EXT_meshopt_compression" | "KHR_meshopt_compression"
        ) {
            return Err(MeshError::parse(path, 0, format!("unsupported required glTF extension {name} (decompress the file first, e.g. with gltf-transform)")));
        }
    }
    let mut doc = Doc {
        path,
        dir,
        root,
        buffers: Vec::new(),
        refs: RefCell::new(Refs::new(path, opts)),
    };
    doc.load_buffers(bin)?;

    let mut mesh = Mesh::default();
    let mut at = Attrs {
        uvs: Vec::new(),
        normals: Vec::new(),
        colors: Vec::new(),
        all_uv: true,
        all_n: true,
        all_c: true,
    };
    let mut material_id: Option<usize> = None;
    let mut warnings = Vec::new();
    let instances = doc.instances()?;
    doc.check_scene_size(&instances)?;
    for (mi, m) in instances {
        let prims = doc
            .get("meshes", mi)?
            .get("primitives")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (pi, p) in prims.iter().enumerate() {
            let mode = uget(p, "mode").unwrap_or(4);
            if mode != 4 {
                warnings.push(format!(
                    "{}: meshes[{mi}].primitives[{pi}] mode {mode} is not triangles; skipped",
                    path.display()
                ));
                continue;
            }
            add_primitive(
                &doc,
                &mut mesh,
                &mut at,
                p,
                &m,
                &format!("meshes[{mi}].primitives[{pi}]"),
            )?;
            if let Some(m) = uget(p, "material") {
                match material_id {
                    None => material_id = Some(m),
                    Some(k) if k != m => warnings.push(format!(
                        "{}: several materials; only materials[{k}] is kept",
                        path.display()
                    )),
                    _ => {}
                }
            }
        }
    }
    if at.all_uv && !mesh.vertices.is_empty() {
        if !at
            .uvs
            .iter()
            .all(|t: &[f32; 2]| t[0].is_finite() && t[1].is_finite())
        {
            return Err(doc.err("TEXCOORD_0 is not finite"));
        }
        mesh.uv_faces = Some(mesh.faces.clone());
        mesh.uvs = Some(at.uvs);
    }
    if at.all_n && !mesh.vertices.is_empty() {
        mesh.normals = Some(at.normals);
    }
    if at.all_c && !mesh.vertices.is_empty() {
        mesh.colors = Some(at.colors);
    }
    if let Some(mi) = material_id {
        mesh.material = Some(doc.material(mi, &mut warnings)?);
    }
    Ok(Loaded { mesh, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Limits;

    fn tmp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rust_mesh_gltf_{}_{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// One triangle in `pos.bin`, named by `nbuf` buffers, instanced by `ninst` nodes.
    fn scene(d: &Path, nbuf: usize, ninst: usize) -> Vec<u8> {
        let pos: Vec<u8> = [0f32, 0., 0., 1., 0., 0., 0., 1., 0.]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        std::fs::write(d.join("pos.bin"), pos).unwrap();
        let doc = json!({
            "asset": {"version": "2.0"},
            "buffers": vec![json!({"byteLength": 36, "uri": "pos.bin"}); nbuf],
            "bufferViews": [{"buffer": nbuf - 1, "byteLength": 36}],
            "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
            "nodes": vec![json!({"mesh": 0}); ninst],
            "scenes": [{"nodes": (0..ninst).collect::<Vec<_>>()}],
        });
        serde_json::to_vec(&doc).unwrap()
    }

    fn opts(limits: Limits) -> LoadOptions {
        LoadOptions {
            allow_external_files: false,
            limits,
        }
    }

    #[test]
    fn instances_are_counted_against_the_limits_before_reading() {
        let d = tmp_dir("instances");
        let p = d.join("m.gltf");
        let small = Limits {
            max_vertices: 9,
            max_faces: 2,
            ..Default::default()
        };
        let m = parse_gltf(&scene(&d, 1, 2), &p, &opts(small)).unwrap().mesh;
        assert_eq!((m.vertices.len(), m.faces.len()), (6, 2));
        let e = parse_gltf(&scene(&d, 1, 3), &p, &opts(small))
            .err()
            .unwrap()
            .to_string();
        assert!(e.ends_with("the scene's mesh instances hold 3 faces in total, over the limit of 2 (each instance of a mesh counts)"), "{e}");
        let e = parse_gltf(&scene(&d, 1, 4), &p, &opts(small))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("hold 12 vertices in total, over the limit of 9"),
            "{e}"
        );
        // Zero-filled accessors (no bufferView) cost nothing in the file: 2^24 vertices × 64 nodes.
        let doc = br#"{"asset":{"version":"2.0"},"accessors":[{"componentType":5126,"count":16777216,"type":"VEC3"}],
            "meshes":[{"primitives":[{"attributes":{"POSITION":0}}]}],"nodes":[{"mesh":0},{"mesh":0},{"mesh":0}],
            "scenes":[{"nodes":[0,1,2]}]}"#;
        let e = parse_gltf(doc, &p, &LoadOptions::default()).err().unwrap();
        assert!(
            matches!(e, MeshError::Limit { .. }) && e.to_string().contains("50331648 vertices"),
            "{e}"
        );
    }

    #[test]
    fn buffers_naming_one_file_read_it_once_and_are_limited_in_number() {
        let d = tmp_dir("buffers");
        let p = d.join("m.gltf");
        // 100 buffers × 36 bytes, within a 72-byte budget: only possible if the file is read once.
        let l = Limits {
            max_buffer_bytes: 72,
            max_references: 100,
            ..Default::default()
        };
        let m = parse_gltf(&scene(&d, 100, 1), &p, &opts(l)).unwrap().mesh;
        assert_eq!(m.vertices[1], [1.0, 0.0, 0.0]);
        let e = parse_gltf(&scene(&d, 101, 1), &p, &opts(l))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("more than 100 glTF buffer references"), "{e}");
        let l = Limits {
            max_buffer_bytes: 35,
            ..Default::default()
        };
        let e = parse_gltf(&scene(&d, 1, 1), &p, &opts(l))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("buffers[0].uri \"pos.bin\": 36 bytes would bring the total read to over the limit of 35"), "{e}");
    }

    #[test]
    fn uris_other_than_relative_files_and_data_are_refused() {
        let d = tmp_dir("uris");
        let doc = String::from_utf8(scene(&d, 1, 1)).unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::copy(d.join("pos.bin"), d.join("sub").join("pos.bin")).unwrap();
        let p = d.join("sub").join("m.gltf");
        for (uri, want) in [
            (
                "https://example.com/pos.bin",
                "https: URIs are not supported",
            ),
            ("pos%2.bin", "malformed %-escape"),
            ("%2E%2E/pos.bin", "outside the mesh's folder"),
            ("file:pos.bin", "file: URIs are refused"),
        ] {
            let e = parse_gltf(
                doc.replace("\"pos.bin\"", &format!("{uri:?}")).as_bytes(),
                &p,
                &LoadOptions::default(),
            );
            let e = e.err().unwrap().to_string();
            assert!(
                e.starts_with(&format!("{}: buffers[0].uri ", p.display())) && e.contains(want),
                "{e}"
            );
        }
        let ok = doc.replace("\"pos.bin\"", "\"p%6Fs.bin\"");
        assert_eq!(
            parse_gltf(ok.as_bytes(), &p, &LoadOptions::default())
                .unwrap()
                .mesh
                .faces
                .len(),
            1
        );
    }
}
