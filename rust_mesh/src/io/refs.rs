//! Files a mesh refers to (MTL libraries, textures, glTF buffers and images): where they may be, how they
//! are opened, and how much one load may read or allocate.
//!
//! Policy. By default a reference must be a relative path that resolves, after `..` and symlinks, inside
//! the mesh file's folder: absolute paths, `file:` URIs and escapes are refused (a downloaded mesh must not
//! make the loader read `~/.ssh/id_rsa` into vertex positions or a texture). `allow_external_files` lifts
//! that. Whatever the policy, only regular files are opened: `/dev/zero` would be read until memory runs
//! out and a FIFO or `/dev/stdin` would block forever, so the type is checked before opening, and again on
//! the opened descriptor (opened non-blocking, in case the path was swapped in between).
//!
//! Limits. Each distinct file is read once per load (a glTF whose buffers all name one file reads it
//! once); the bytes read (plus embedded buffers), the number of references of each kind, the pixels of a
//! decoded image and the vertices/faces of the result are bounded, each checked before the allocation it
//! guards and reported as `MeshError::Limit` naming the referencing file and line. Policy refusals are
//! `MeshError::Refused`: an error for MTL libraries and glTF buffers, a dropped texture (with a warning
//! that names the option) for texture maps, like any other unreadable texture.
use crate::{MeshError, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Appended to policy refusals: the way to opt in.
pub const HINT: &str = "pass allow_external_files=True (--mesh.allow_external_files) to allow it";

/// Upper bounds for one load. The defaults are generous for real assets (8192² textures, tens of
/// millions of triangles) and keep a hostile file within a few GiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// References of one kind per load, repeats included: `mtllib` names, MTL texture-map statements,
    /// glTF buffers.
    pub max_references: usize,
    /// Pixels (width × height) of one decoded image, from its header, before decoding. 8192² as float
    /// RGBA is 1 GiB.
    pub max_image_pixels: u64,
    /// Total bytes of the referenced files read (each distinct file once) plus embedded glTF buffers.
    pub max_buffer_bytes: u64,
    /// Vertices and triangles of the loaded mesh (glTF instancing can repeat one accessor many times).
    pub max_vertices: usize,
    pub max_faces: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_references: 4096,
            max_image_pixels: 1 << 26,
            max_buffer_bytes: 1 << 31,
            max_vertices: 1 << 25,
            max_faces: 1 << 26,
        }
    }
}

/// How a mesh is loaded: the reference policy and the limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Follow absolute paths, `file:` URIs and references outside the mesh's folder.
    pub allow_external_files: bool,
    pub limits: Limits,
}

/// Why a file could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    /// Not a regular file: what it is ("a directory", "a FIFO", ...).
    NotRegular(&'static str),
    /// The file's size, over the bytes still allowed.
    TooLarge(u64),
}

fn not_regular(m: &std::fs::Metadata) -> Option<&'static str> {
    let t = m.file_type();
    if t.is_file() {
        return None;
    }
    if t.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() || t.is_block_device() {
            return Some("a device file");
        }
        if t.is_fifo() {
            return Some("a FIFO");
        }
        if t.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a regular file")
}

fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NONBLOCK);
    }
    o.open(path)
}

/// Reads a regular file of at most `max_bytes` bytes (following symlinks); anything else is refused
/// without reading (and, for non-regular files, without opening).
pub fn read_regular(path: &Path, max_bytes: u64) -> std::result::Result<Vec<u8>, ReadError> {
    let meta = std::fs::metadata(path).map_err(ReadError::Io)?;
    if let Some(k) = not_regular(&meta) {
        return Err(ReadError::NotRegular(k));
    }
    let f = open_nonblocking(path).map_err(ReadError::Io)?;
    let meta = f.metadata().map_err(ReadError::Io)?;
    if let Some(k) = not_regular(&meta) {
        return Err(ReadError::NotRegular(k));
    }
    if meta.len() > max_bytes {
        return Err(ReadError::TooLarge(meta.len()));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // `take`: a file that grows while being read cannot push past the size that was checked.
    f.take(meta.len())
        .read_to_end(&mut buf)
        .map_err(ReadError::Io)?;
    Ok(buf)
}

/// Reads the mesh file itself: any location, but only a regular file (a FIFO named `x.obj` must not block).
pub fn read_mesh_file(path: &Path) -> Result<Vec<u8>> {
    read_regular(path, u64::MAX).map_err(|e| match e {
        ReadError::Io(e) => MeshError::io(path, e),
        ReadError::NotRegular(k) => MeshError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("is {k}, not a regular file"),
            ),
        ),
        ReadError::TooLarge(n) => {
            MeshError::limit(path, 0, format!("file of {n} bytes is too large"))
        }
    })
}

/// `file:` URI → the path it names; `None` when `s` is not a `file:` URI.
fn file_uri_path(s: &str) -> Option<std::result::Result<&str, ()>> {
    if !s.get(..5)?.eq_ignore_ascii_case("file:") {
        return None;
    }
    let rest = &s[5..];
    Some(match rest.strip_prefix("//") {
        None => Ok(rest),
        Some(r) if r.starts_with('/') => Ok(r),
        Some(r) => r
            .strip_prefix("localhost")
            .filter(|r| r.starts_with('/'))
            .ok_or(()),
    })
}

/// `C:\…`, `C:/…`, `\\server\…`: absolute on Windows, and never meant relative on Linux either.
fn windows_absolute(s: &str) -> bool {
    let b = s.as_bytes();
    (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':') || s.starts_with('\\')
}

/// A place that names a file, for messages: `src:line: what "name": …`.
#[derive(Clone, Copy)]
pub struct Site<'a> {
    pub src: &'a Path,
    pub line: usize,
    pub what: &'a str,
}

impl Site<'_> {
    pub fn refuse(&self, name: &str, msg: impl std::fmt::Display) -> MeshError {
        MeshError::refused(
            self.src,
            self.line,
            format!("{} {name:?}: {msg}", self.what),
        )
    }
    pub fn limit(&self, name: &str, msg: impl std::fmt::Display) -> MeshError {
        MeshError::limit(
            self.src,
            self.line,
            format!("{} {name:?}: {msg}", self.what),
        )
    }
}

/// Per-load state: the policy, the files read so far (cached by canonical path) and the running totals.
pub struct Refs {
    mesh: PathBuf,
    root: Option<PathBuf>,
    opts: LoadOptions,
    cache: HashMap<PathBuf, Rc<[u8]>>,
    bytes: u64,
    counts: HashMap<&'static str, usize>,
}

impl Refs {
    pub fn new(mesh: &Path, opts: &LoadOptions) -> Refs {
        Refs {
            mesh: mesh.to_path_buf(),
            root: None,
            opts: *opts,
            cache: HashMap::new(),
            bytes: 0,
            counts: HashMap::new(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.opts.limits
    }

    /// Bytes read or embedded so far (each distinct file once).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The mesh file's folder, canonical: what references must stay inside.
    fn root(&mut self) -> Result<&Path> {
        if self.root.is_none() {
            let dir = match self.mesh.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            self.root = Some(std::fs::canonicalize(&dir).map_err(|e| MeshError::io(&dir, e))?);
        }
        Ok(self.root.as_deref().unwrap_or(Path::new(".")))
    }

    /// Counts one more reference of `kind` (repeats included) and refuses past the limit.
    pub fn count(&mut self, kind: &'static str, site: Site<'_>) -> Result<()> {
        let max = self.opts.limits.max_references;
        let n = self.counts.entry(kind).or_insert(0);
        *n += 1;
        if *n > max {
            return Err(MeshError::limit(
                site.src,
                site.line,
                format!("more than {max} {kind} references (the limit; repeated references count each time)"),
            ));
        }
        Ok(())
    }

    /// Adds `n` embedded bytes (a data: URI, a GLB BIN chunk) to the total, refusing past the limit.
    pub fn charge(&mut self, n: u64, site: Site<'_>) -> Result<()> {
        let max = self.opts.limits.max_buffer_bytes;
        if self.bytes.saturating_add(n) > max {
            return Err(MeshError::limit(
                site.src,
                site.line,
                format!("{}: {n} more bytes would bring the total read to over the limit of {max} bytes", site.what),
            ));
        }
        self.bytes += n;
        Ok(())
    }

    /// Resolves `name` (as written in `site.src`, relative to `base`, the folder of `site.src`) to a path
    /// the policy allows. Missing files are `MeshError::Io`; policy violations `MeshError::Refused`.
    pub fn resolve(&mut self, name: &str, base: &Path, site: Site<'_>) -> Result<PathBuf> {
        let allow = self.opts.allow_external_files;
        if name.is_empty() {
            return Err(site.refuse(name, "empty file name"));
        }
        let path = match file_uri_path(name) {
            Some(_) if !allow => {
                return Err(site.refuse(name, format!("file: URIs are refused; {HINT}")))
            }
            Some(Ok(p)) => p,
            Some(Err(())) => {
                return Err(site.refuse(name, "file: URIs with a host are not supported"))
            }
            None => name,
        };
        let p = Path::new(path);
        if !allow && (p.is_absolute() || windows_absolute(path)) {
            return Err(site.refuse(name, format!("absolute paths are refused; {HINT}")));
        }
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        };
        if allow {
            return Ok(full);
        }
        // Canonicalising resolves `..` and symlinks, so the containment test sees where the file really is.
        let canon = std::fs::canonicalize(&full).map_err(|e| MeshError::io(&full, e))?;
        let root = self.root()?;
        if !canon.starts_with(root) {
            let msg = format!(
                "resolves to {} outside the mesh's folder {}; {HINT}",
                canon.display(),
                root.display()
            );
            return Err(site.refuse(name, msg));
        }
        Ok(canon)
    }

    /// Reads a resolved reference: once per distinct file, regular files only, within the byte budget.
    pub fn read(&mut self, path: &Path, name: &str, site: Site<'_>) -> Result<Rc<[u8]>> {
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(b) = self.cache.get(&key) {
            return Ok(b.clone());
        }
        let max = self.opts.limits.max_buffer_bytes;
        let data = read_regular(path, max.saturating_sub(self.bytes)).map_err(|e| match e {
            ReadError::Io(e) => MeshError::io(path, e),
            ReadError::NotRegular(k) => site.refuse(name, format!("{} is {k}; only regular files are read", path.display())),
            ReadError::TooLarge(n) => site.limit(
                name,
                format!("{n} bytes would bring the total read to over the limit of {max} bytes ({} already read)", self.bytes),
            ),
        })?;
        self.bytes += data.len() as u64;
        let data: Rc<[u8]> = data.into();
        self.cache.insert(key, data.clone());
        Ok(data)
    }

    /// Resolves and reads `name` (see [`Refs::resolve`] and [`Refs::read`]).
    pub fn fetch(&mut self, name: &str, base: &Path, site: Site<'_>) -> Result<Rc<[u8]>> {
        let p = self.resolve(name, base, site)?;
        self.read(&p, name, site)
    }

    /// Resolves, reads and decodes a texture `name`. Limit and policy refusals name the reference.
    pub fn texture(
        &mut self,
        name: &str,
        base: &Path,
        site: Site<'_>,
        force_color: bool,
    ) -> Result<crate::mesh::Texture> {
        let p = self.resolve(name, base, site)?;
        let bytes = self.read(&p, name, site)?;
        super::texture::decode_image(&bytes, &p, force_color, self.opts.limits.max_image_pixels)
            .map_err(|e| match e {
                MeshError::Limit { msg, .. } => site.limit(name, msg),
                e => e,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rust_mesh_refs_{}_{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        d
    }

    fn site(p: &Path) -> Site<'_> {
        Site {
            src: p,
            line: 7,
            what: "map_Kd",
        }
    }

    #[test]
    fn references_stay_inside_the_mesh_folder() {
        let d = dir("policy");
        let mesh = d.join("sub").join("m.obj");
        std::fs::write(d.join("outside.png"), b"x").unwrap();
        std::fs::write(d.join("sub").join("in.png"), b"y").unwrap();
        std::os::unix::fs::symlink(d.join("outside.png"), d.join("sub").join("link.png")).unwrap();
        let base = d.join("sub");
        let mut r = Refs::new(&mesh, &LoadOptions::default());
        assert_eq!(&*r.fetch("in.png", &base, site(&mesh)).unwrap(), b"y");
        // `..` is fine while it stays inside; a missing file is an I/O error, not a refusal.
        assert_eq!(
            &*r.fetch("../sub/./in.png", &base, site(&mesh)).unwrap(),
            b"y"
        );
        assert!(matches!(
            r.fetch("missing.png", &base, site(&mesh)),
            Err(MeshError::Io { .. })
        ));
        let abs = d.join("sub").join("in.png").display().to_string();
        for (name, want) in [
            ("../outside.png", "outside the mesh's folder"),
            ("link.png", "outside the mesh's folder"),
            (abs.as_str(), "absolute paths are refused"),
            ("C:/tex/in.png", "absolute paths are refused"),
            ("file:///etc/hostname", "file: URIs are refused"),
            ("FILE:in.png", "file: URIs are refused"),
        ] {
            let e = r.fetch(name, &base, site(&mesh)).err().unwrap();
            assert!(matches!(e, MeshError::Refused { .. }), "{name}: {e}");
            let s = e.to_string();
            assert!(
                s.starts_with(&format!("{}:7: map_Kd {name:?}: ", mesh.display())),
                "{s}"
            );
            assert!(
                s.contains(want) && s.contains("--mesh.allow_external_files"),
                "{s}"
            );
        }
        // allow_external_files follows them (the same policy otherwise).
        let mut r = Refs::new(
            &mesh,
            &LoadOptions {
                allow_external_files: true,
                ..Default::default()
            },
        );
        assert_eq!(
            &*r.fetch("../outside.png", &base, site(&mesh)).unwrap(),
            b"x"
        );
        assert_eq!(&*r.fetch(&abs, &base, site(&mesh)).unwrap(), b"y");
        assert_eq!(
            &*r.fetch(&format!("file://{abs}"), &base, site(&mesh))
                .unwrap(),
            b"y"
        );
    }

    #[test]
    fn only_regular_files_are_opened_even_when_external_files_are_allowed() {
        let d = dir("devices");
        let mesh = d.join("m.gltf");
        let fifo = d.join("pipe.bin");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink("/dev/zero", d.join("zero.bin")).unwrap();
        let mut r = Refs::new(
            &mesh,
            &LoadOptions {
                allow_external_files: true,
                ..Default::default()
            },
        );
        for (name, kind) in [
            ("pipe.bin", "a FIFO"),
            ("zero.bin", "a device file"),
            ("/dev/stdin", ""),
            ("sub", "a directory"),
        ] {
            let e = r.fetch(name, &d, site(&mesh)).err().unwrap();
            assert!(matches!(e, MeshError::Refused { .. }), "{name}: {e}");
            assert!(
                e.to_string().contains(kind) && e.to_string().contains("only regular files"),
                "{e}"
            );
        }
        // The mesh file itself: any folder, but regular.
        assert!(matches!(read_mesh_file(&fifo), Err(MeshError::Io { .. })));
    }

    #[test]
    fn each_file_is_read_once_and_the_total_is_bounded() {
        let d = dir("budget");
        let mesh = d.join("m.gltf");
        std::fs::write(d.join("a.bin"), vec![1u8; 1000]).unwrap();
        std::fs::write(d.join("b.bin"), vec![2u8; 1000]).unwrap();
        let limits = Limits {
            max_buffer_bytes: 1500,
            max_references: 3,
            ..Default::default()
        };
        let mut r = Refs::new(
            &mesh,
            &LoadOptions {
                limits,
                ..Default::default()
            },
        );
        let s = Site {
            src: &mesh,
            line: 0,
            what: "buffers[0].uri",
        };
        for _ in 0..3 {
            r.count("glTF buffer", s).unwrap();
            assert_eq!(r.fetch("a.bin", &d, s).unwrap().len(), 1000);
            assert_eq!(r.fetch("./sub/../a.bin", &d, s).unwrap().len(), 1000);
        }
        assert_eq!(r.bytes(), 1000);
        let e = r.count("glTF buffer", s).err().unwrap().to_string();
        assert!(e.contains("more than 3 glTF buffer references"), "{e}");
        let e = r.fetch("b.bin", &d, s).err().unwrap().to_string();
        assert!(e.contains("over the limit of 1500 bytes"), "{e}");
        assert!(r.charge(501, s).is_err() && r.charge(500, s).is_ok());
    }
}
