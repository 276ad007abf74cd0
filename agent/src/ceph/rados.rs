//! A persistent monitor session through librados (`librados.so.2`, loaded
//! at run time so the agent runs on nodes without it until a scenario asks
//! for it). One `mon_command` costs about a millisecond instead of the CLI's
//! 175-300 ms of Python start-up; the monitors forward mgr commands (`pg
//! dump`, `osd ok-to-stop`) to the active mgr, as the CLI's do.
//!
//! Loaded with `dlopen` rather than linked: Debian ships no librados
//! `-dev` package on most nodes, and a missing library must be a clear
//! error for one scenario, not a binary that does not start.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RadosError {
    #[error("librados is not available ({0}); install librados2 or give `ceph:` as a command")]
    Library(String),
    #[error("{what}: {reason}")]
    Call { what: String, reason: String },
}

type Handle = *mut c_void;

// The few librados calls bounce uses (librados.h, stable C API).
type Create2 = unsafe extern "C" fn(*mut Handle, *const c_char, *const c_char, u64) -> c_int;
type ConfReadFile = unsafe extern "C" fn(Handle, *const c_char) -> c_int;
type ConfSet = unsafe extern "C" fn(Handle, *const c_char, *const c_char) -> c_int;
type Connect = unsafe extern "C" fn(Handle) -> c_int;
type MonCommand = unsafe extern "C" fn(
    Handle,
    *mut *const c_char,
    usize,
    *const c_char,
    usize,
    *mut *mut c_char,
    *mut usize,
    *mut *mut c_char,
    *mut usize,
) -> c_int;
type BufferFree = unsafe extern "C" fn(*mut c_char);
type Shutdown = unsafe extern "C" fn(Handle);

struct Api {
    create2: Create2,
    conf_read_file: ConfReadFile,
    conf_set: ConfSet,
    connect: Connect,
    mon_command: MonCommand,
    buffer_free: BufferFree,
    shutdown: Shutdown,
}

fn api() -> Result<&'static Api, RadosError> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load)
        .as_ref()
        .map_err(|e| RadosError::Library(e.clone()))
}

fn load() -> Result<Api, String> {
    // SAFETY: dlopen/dlsym with NUL-terminated names; the library is never
    // closed (librados does not support being unloaded), so the symbols stay
    // valid for the life of the process. Each symbol is cast to the
    // signature librados.h declares for it.
    unsafe {
        let lib = libc::dlopen(c"librados.so.2".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if lib.is_null() {
            let why = libc::dlerror();
            return Err(if why.is_null() {
                "dlopen librados.so.2 failed".into()
            } else {
                CStr::from_ptr(why).to_string_lossy().into_owned()
            });
        }
        let sym = |name: &CStr| -> Result<*mut c_void, String> {
            let p = libc::dlsym(lib, name.as_ptr());
            if p.is_null() {
                Err(format!("librados.so.2 has no {}", name.to_string_lossy()))
            } else {
                Ok(p)
            }
        };
        Ok(Api {
            create2: std::mem::transmute::<*mut c_void, Create2>(sym(c"rados_create2")?),
            conf_read_file: std::mem::transmute::<*mut c_void, ConfReadFile>(sym(
                c"rados_conf_read_file",
            )?),
            conf_set: std::mem::transmute::<*mut c_void, ConfSet>(sym(c"rados_conf_set")?),
            connect: std::mem::transmute::<*mut c_void, Connect>(sym(c"rados_connect")?),
            mon_command: std::mem::transmute::<*mut c_void, MonCommand>(sym(c"rados_mon_command")?),
            buffer_free: std::mem::transmute::<*mut c_void, BufferFree>(sym(c"rados_buffer_free")?),
            shutdown: std::mem::transmute::<*mut c_void, Shutdown>(sym(c"rados_shutdown")?),
        })
    }
}

/// What a monitor answered: librados' return code (0 or -errno), the
/// output buffer and the status string (the CLI's stderr).
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: i32,
    pub out: Vec<u8>,
    pub status: String,
}

/// One connected cluster handle. librados handles are thread-safe; calls
/// block, so async callers run them on the blocking pool.
pub struct Session {
    api: &'static Api,
    handle: Handle,
    /// For messages: the configuration file and client name.
    pub conf: PathBuf,
    pub name: String,
}

// SAFETY: a rados_t may be used from any thread, concurrently (librados.h:
// "the cluster handle is thread-safe").
unsafe impl Send for Session {}
unsafe impl Sync for Session {}

fn cstring(what: &str, s: &str) -> Result<CString, RadosError> {
    CString::new(s).map_err(|_| RadosError::Call {
        what: what.into(),
        reason: format!("{s:?} contains a NUL byte"),
    })
}

/// `-errno` in words, with its symbolic name where Ceph's messages use it.
pub fn describe_code(code: i32) -> String {
    let name = match -code {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EINVAL => "EINVAL",
        libc::EAGAIN => "EAGAIN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ENOTSUP => "ENOTSUP",
        _ => "error",
    };
    format!(
        "{name} ({})",
        std::io::Error::from_raw_os_error(-code)
            .to_string()
            .split(" (os error")
            .next()
            .unwrap_or_default()
    )
}

impl Session {
    /// Reads `conf`, authenticates as `name` (e.g. `client.admin`) with the
    /// keyring the configuration names or `keyring`, and connects; every
    /// wait (connecting, each command) is bounded by `timeout`.
    pub fn connect(
        conf: &Path,
        name: &str,
        keyring: Option<&Path>,
        timeout: Duration,
    ) -> Result<Session, RadosError> {
        let api = api()?;
        let what = format!("librados as {name} with {}", conf.display());
        let fail = |step: &str, code: c_int| RadosError::Call {
            what: what.clone(),
            reason: format!("{step}: {}", describe_code(code)),
        };
        let c_name = cstring(&what, name)?;
        let c_conf = cstring(&what, &conf.display().to_string())?;
        let mut handle: Handle = std::ptr::null_mut();
        // SAFETY: the pointers are valid NUL-terminated strings for the call.
        let r = unsafe { (api.create2)(&mut handle, c"ceph".as_ptr(), c_name.as_ptr(), 0) };
        if r < 0 {
            return Err(fail("rados_create2", r));
        }
        // From here on the handle is owned by `session` (shut down on drop).
        let session = Session {
            api,
            handle,
            conf: conf.to_path_buf(),
            name: name.to_string(),
        };
        // SAFETY: a valid handle and C string.
        let r = unsafe { (api.conf_read_file)(handle, c_conf.as_ptr()) };
        if r < 0 {
            return Err(fail("reading the configuration", r));
        }
        let secs = timeout.as_secs().max(1).to_string();
        let mut options = vec![
            ("client_mount_timeout", secs.clone()),
            ("rados_mon_op_timeout", secs.clone()),
            ("rados_osd_op_timeout", secs),
            // No admin socket for the agent's client: two agents (or the
            // CLI) on one node would fight over its path.
            ("admin_socket", String::new()),
        ];
        if let Some(k) = keyring {
            options.push(("keyring", k.display().to_string()));
        }
        for (option, value) in options {
            let (o, v) = (cstring(&what, option)?, cstring(&what, &value)?);
            // SAFETY: a valid handle and C strings.
            let r = unsafe { (api.conf_set)(handle, o.as_ptr(), v.as_ptr()) };
            if r < 0 {
                return Err(fail(&format!("setting {option}"), r));
            }
        }
        // SAFETY: a configured handle; blocks at most client_mount_timeout.
        let r = unsafe { (api.connect)(handle) };
        if r < 0 {
            return Err(fail("connecting to the monitors", r));
        }
        Ok(session)
    }

    /// Sends one JSON command to the monitors (which forward mgr commands)
    /// and waits for the answer, at most `rados_mon_op_timeout`.
    pub fn mon_command(&self, cmd: &str) -> Result<Reply, RadosError> {
        let c_cmd = cstring("mon_command", cmd)?;
        let mut cmds = [c_cmd.as_ptr()];
        let (mut out, mut out_len): (*mut c_char, usize) = (std::ptr::null_mut(), 0);
        let (mut status, mut status_len): (*mut c_char, usize) = (std::ptr::null_mut(), 0);
        // SAFETY: one valid command string; librados allocates the two
        // buffers (or leaves them null), which are freed below with
        // rados_buffer_free after copying.
        let code = unsafe {
            (self.api.mon_command)(
                self.handle,
                cmds.as_mut_ptr(),
                1,
                c"".as_ptr(),
                0,
                &mut out,
                &mut out_len,
                &mut status,
                &mut status_len,
            )
        };
        // SAFETY: each buffer is either null or `len` bytes from librados.
        let take = |p: *mut c_char, len: usize| unsafe {
            if p.is_null() {
                Vec::new()
            } else {
                let v = std::slice::from_raw_parts(p as *const u8, len).to_vec();
                (self.api.buffer_free)(p);
                v
            }
        };
        let out = take(out, out_len);
        let status = String::from_utf8_lossy(&take(status, status_len)).into_owned();
        Ok(Reply { code, out, status })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: the handle came from rados_create2 and is shut down once.
        unsafe { (self.api.shutdown)(self.handle) }
    }
}
