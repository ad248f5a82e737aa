//! `cairn-batched`, the SQLite VFS cairn opens databases through: it gathers SQLite's
//! page-sized writes into large ones, and reads ahead while SQLite reads page after page.
//!
//! SQLite reads and writes one page (usually 4 KiB) per call, and on this path the
//! kernel's cost is per call: reading or writing 1 GiB in 4 KiB calls takes about three
//! times the system time of doing it in 64 KiB calls.
//! - Writes that continue one another within an aligned 64 KiB block wait in a buffer
//!   until the next one that does not, or until any other operation on the file. The
//!   buffer is always written before SQLite reads, truncates, syncs, sizes, locks or
//!   closes the file; an error writing it is returned by that operation and by every
//!   later one, as SQLite ignores the result of some calls (`xClose`, file control
//!   hints). The snapshot asks for the last writes explicitly ([`flush`]) before it
//!   closes the copy, which reports any failure. Only the copies cairn owns are written
//!   (no journal, no other writer, no sync).
//! - A read of a main database file that misses the cache next to the previous miss
//!   reads the whole 64 KiB block around it; a few blocks are kept. The backup API reads
//!   the live database in page order, and `integrity_check` walks a table's pages in
//!   runs, forwards and backwards, so most of their reads are then served from memory;
//!   reads that jump about are passed on as they are.
//!
//! What was read ahead is forgotten whenever the file is locked or unlocked (`xLock`,
//! `xUnlock`, and `xShmLock`, which begins and ends a WAL read transaction), written,
//! truncated or sized, so a block serves reads of one read transaction only. That is
//! what makes reading ahead sound on a live database that other processes write: within
//! a read transaction, SQLite's locking keeps every page it reads from the database file
//! unchanged. A rollback-journal writer waits until the shared lock is released. In WAL
//! mode, a reader takes a page from the database file only when its snapshot has no
//! frame of that page, and a checkpoint writes back only frames that every reader's
//! snapshot holds (none while a reader ignores the WAL), so none of them overwrites
//! that page while the reader reads. Bytes of a block that SQLite does not read may
//! change meanwhile; they are never served. Journal and WAL files are never read ahead:
//! their reads are not framed by locks on their own handle.
//!
//! A file may also carry a [`WriteTap`], which sees every byte as it reaches the file: the
//! snapshot stores its copy's chunks that way ([`super::copy_tap`]).
//!
//! Everything but `xOpen` is the default VFS's (`unix`), and every file method but reads
//! and writes is handed to the file the default VFS opened.

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name to open a database with (`Connection::open_with_flags_and_vfs`).
pub const NAME: &CStr = c"cairn-batched";

/// The most bytes gathered into one write. The default VFS writes at most 128 KiB - 1
/// bytes per call (`seekAndWriteFd`), and 64 KiB calls already cost the kernel a third
/// of what 4 KiB ones do.
pub const GATHER: usize = 64 * 1024;
/// Bytes read ahead at once, and how many such blocks a file keeps.
const BLOCK: usize = 64 * 1024;
const BLOCKS_KEPT: usize = 8;

/// A private file-control opcode: write what is gathered and report how that went.
const FCNTL_FLUSH: c_int = 0x6361_6972;
/// A private file-control opcode: attach a [`WriteTap`] to the file.
const FCNTL_TAP: c_int = 0x6361_6973;

/// Sees a file's bytes as they are written to it, and when what it saw stops holding.
pub trait WriteTap: Send {
    /// `bytes` are now the file's from `offset`.
    fn written(&mut self, offset: u64, bytes: &[u8]);
    /// What the file holds from `offset` on is no longer what was written there: it was
    /// truncated, or a write there failed.
    fn forget_from(&mut self, offset: u64);
}

/// Registers the VFS with SQLite, once; an error if SQLite has no default VFS.
pub fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: `sqlite3_vfs_find` initialises SQLite and returns a pointer to a VFS
            // that lives as long as the process; ours is leaked for the same reason.
            unsafe {
                let inner = ffi::sqlite3_vfs_find(std::ptr::null());
                if inner.is_null() {
                    return Err("SQLite has no default VFS".into());
                }
                let mut vfs = *inner;
                vfs.pNext = std::ptr::null_mut();
                vfs.zName = NAME.as_ptr();
                vfs.szOsFile = (inner_offset() + (*inner).szOsFile as usize) as c_int;
                vfs.pAppData = inner.cast();
                vfs.xOpen = Some(open);
                let vfs = Box::leak(Box::new(vfs));
                match ffi::sqlite3_vfs_register(vfs, 0) {
                    ffi::SQLITE_OK => Ok(()),
                    code => Err(format!(
                        "registering cairn's SQLite VFS failed (code {code})"
                    )),
                }
            }
        })
        .clone()
}

/// Writes what SQLite left gathered in the main database file of `conn`, so that an error
/// shows before the copy is closed.
pub fn flush(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    // SAFETY: the handle is valid while `conn` is borrowed; the opcode takes no argument.
    let code = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            FCNTL_FLUSH,
            std::ptr::null_mut(),
        )
    };
    match code {
        ffi::SQLITE_OK => Ok(()),
        code => Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(code),
            Some(format!(
                "{} (writing the copy's last pages)",
                ffi::Error::new(code)
            )),
        )),
    }
}

/// Attaches `tap` to the main database file of `conn`: it sees every later write.
pub fn tap(conn: &rusqlite::Connection, tap: Box<dyn WriteTap>) -> rusqlite::Result<()> {
    let mut slot = Some(tap);
    // SAFETY: the handle is valid while `conn` is borrowed; `file_control` takes the tap
    // out of the slot, which outlives the call.
    let code = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            FCNTL_TAP,
            (&raw mut slot).cast(),
        )
    };
    match code {
        ffi::SQLITE_OK if slot.is_none() => Ok(()),
        code => Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(code),
            Some("attaching a write tap: the database is not open through cairn's VFS".into()),
        )),
    }
}

/// A file opened through this VFS. SQLite sees the `base`; the default VFS's file lives
/// in the same allocation, after this struct.
#[repr(C)]
struct BatchedFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    gathered: Vec<u8>,
    gathered_at: i64,
    /// The error of a gathered write that failed: every later operation reports it, so it
    /// is not lost when the write happened in a call whose result SQLite ignores (a file
    /// control hint such as `SQLITE_FCNTL_SIZE_HINT`, or `xClose`).
    write_failed: c_int,
    /// Blocks read ahead, most recently used first: (block number, its bytes).
    blocks: Vec<(u64, Box<[u8]>)>,
    /// The block of the last read the cache missed.
    last_miss: Option<u64>,
    /// Whether reads may be served from `blocks`: only a main database file's are (see
    /// the module's comment).
    reads_ahead: bool,
    tap: Option<Box<dyn WriteTap>>,
}

fn inner_offset() -> usize {
    std::mem::size_of::<BatchedFile>().next_multiple_of(16)
}

/// # Safety
/// `file` must be a file this VFS opened and has not closed.
unsafe fn batched_file<'a>(file: *mut ffi::sqlite3_file) -> &'a mut BatchedFile {
    unsafe { &mut *file.cast::<BatchedFile>() }
}

impl BatchedFile {
    /// The default VFS's methods and file.
    fn inner_methods(&self) -> (&'static ffi::sqlite3_io_methods, *mut ffi::sqlite3_file) {
        // SAFETY: the default VFS opened `inner` successfully, so it has methods, which
        // live as long as the process.
        unsafe { (&*(*self.inner).pMethods, self.inner) }
    }

    /// Writes the gathered bytes, if any; once that failed, reports the failure.
    fn write_gathered(&mut self) -> c_int {
        if self.write_failed != ffi::SQLITE_OK || self.gathered.is_empty() {
            return self.write_failed;
        }
        let (methods, inner) = self.inner_methods();
        let Some(write) = methods.xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        // SAFETY: the buffer is valid for its length, which is at most `GATHER`.
        let code = unsafe {
            write(
                inner,
                self.gathered.as_ptr().cast(),
                self.gathered.len() as c_int,
                self.gathered_at,
            )
        };
        tell_tap(&mut self.tap, code, self.gathered_at, &self.gathered);
        self.gathered.clear();
        self.write_failed = code;
        code
    }

    /// Readies the file for a call handed on that reads, sizes, locks or changes it:
    /// writes what is gathered, and forgets what was read ahead (it may be gone or stale).
    fn settle(&mut self) -> c_int {
        let written = self.write_gathered();
        if written == ffi::SQLITE_OK {
            self.blocks.clear();
        }
        written
    }
}

/// Tells the tap, if any, how a write of `bytes` at `offset` went.
fn tell_tap(tap: &mut Option<Box<dyn WriteTap>>, code: c_int, offset: i64, bytes: &[u8]) {
    if let Some(tap) = tap {
        let offset = offset.max(0) as u64;
        if code == ffi::SQLITE_OK {
            tap.written(offset, bytes);
        } else {
            tap.forget_from(offset);
        }
    }
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    unsafe {
        let inner_vfs = (*vfs).pAppData.cast::<ffi::sqlite3_vfs>();
        let inner = file
            .cast::<u8>()
            .add(inner_offset())
            .cast::<ffi::sqlite3_file>();
        let Some(inner_open) = (*inner_vfs).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        let code = inner_open(inner_vfs, name, inner, flags, out_flags);
        if code != ffi::SQLITE_OK || (*inner).pMethods.is_null() {
            // SQLite closes a file whose open failed only if it has methods: it has none.
            (*file).pMethods = std::ptr::null();
            return code;
        }
        file.cast::<BatchedFile>().write(BatchedFile {
            base: ffi::sqlite3_file { pMethods: &METHODS },
            inner,
            gathered: Vec::new(),
            gathered_at: 0,
            write_failed: ffi::SQLITE_OK,
            blocks: Vec::new(),
            last_miss: None,
            reads_ahead: flags & ffi::SQLITE_OPEN_MAIN_DB != 0,
            tap: None,
        });
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    unsafe {
        let this = batched_file(file);
        this.blocks.clear();
        let len = amount.max(0) as usize;
        // A gathered write stays within one aligned block of `GATHER` bytes, so that a
        // block written whole reaches the file (and a tap) in one write.
        let block_end = (this.gathered_at / GATHER as i64 + 1) * GATHER as i64;
        let continues = !this.gathered.is_empty()
            && this.gathered_at + this.gathered.len() as i64 == offset
            && offset + len as i64 <= block_end;
        if !continues {
            let code = this.write_gathered();
            if code != ffi::SQLITE_OK {
                return code;
            }
            if len >= GATHER {
                let (methods, inner) = this.inner_methods();
                let code = match methods.xWrite {
                    Some(write) => write(inner, data, amount, offset),
                    None => ffi::SQLITE_IOERR_WRITE,
                };
                let bytes = std::slice::from_raw_parts(data.cast(), len);
                tell_tap(&mut this.tap, code, offset, bytes);
                return code;
            }
            if this.gathered.capacity() == 0 {
                this.gathered.reserve_exact(GATHER);
            }
            this.gathered_at = offset;
        }
        this.gathered
            .extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), len));
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let this = batched_file(file);
        let written = this.write_gathered();
        let (methods, inner) = this.inner_methods();
        let closed = methods.xClose.map_or(ffi::SQLITE_OK, |close| close(inner));
        std::ptr::drop_in_place(file.cast::<BatchedFile>());
        (*file).pMethods = std::ptr::null();
        if written != ffi::SQLITE_OK {
            written
        } else {
            closed
        }
    }
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    unsafe {
        let this = batched_file(file);
        let written = this.write_gathered();
        if op == FCNTL_TAP {
            // SAFETY: `tap` passes a pointer to its slot, valid for this call.
            this.tap = (*arg.cast::<Option<Box<dyn WriteTap>>>()).take();
            return written;
        }
        if op == FCNTL_FLUSH || written != ffi::SQLITE_OK {
            return written;
        }
        let (methods, inner) = this.inner_methods();
        methods
            .xFileControl
            .map_or(ffi::SQLITE_NOTFOUND, |control| control(inner, op, arg))
    }
}

/// Defines a file method that writes the gathered bytes, then hands the call on.
macro_rules! after_writing {
    ($name:ident, $method:ident, $missing:expr, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            unsafe {
                let this = batched_file(file);
                let written = this.settle();
                if written != ffi::SQLITE_OK {
                    return written;
                }
                let (methods, inner) = this.inner_methods();
                methods.$method.map_or($missing, |method| method(inner, $($arg),*))
            }
        }
    };
}

/// Defines a file method that hands the call on: it neither reads nor changes the file's
/// bytes.
macro_rules! passed_on {
    ($name:ident, $method:ident, $missing:expr, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            unsafe {
                let (methods, inner) = batched_file(file).inner_methods();
                methods.$method.map_or($missing, |method| method(inner, $($arg),*))
            }
        }
    };
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    unsafe {
        let this = batched_file(file);
        let written = this.write_gathered();
        if written != ffi::SQLITE_OK {
            return written;
        }
        let (methods, inner) = this.inner_methods();
        let Some(inner_read) = methods.xRead else {
            return ffi::SQLITE_IOERR_READ;
        };
        let (len, start) = (amount.max(0) as usize, offset.max(0) as u64);
        let block = start / BLOCK as u64;
        let within = (start % BLOCK as u64) as usize;
        let out = std::slice::from_raw_parts_mut(data.cast::<u8>(), len);
        if !this.reads_ahead || within + len > BLOCK {
            return inner_read(inner, data, amount, offset);
        }
        if let Some(i) = this.blocks.iter().position(|(b, _)| *b == block) {
            out.copy_from_slice(&this.blocks[i].1[within..within + len]);
            this.blocks[..=i].rotate_right(1);
            return ffi::SQLITE_OK;
        }
        let in_a_run = this.last_miss.is_some_and(|last| last.abs_diff(block) <= 1);
        this.last_miss = Some(block);
        if !in_a_run {
            return inner_read(inner, data, amount, offset);
        }
        let mut bytes = if this.blocks.len() == BLOCKS_KEPT {
            this.blocks
                .pop()
                .map(|(_, bytes)| bytes)
                .unwrap_or_default()
        } else {
            vec![0; BLOCK].into_boxed_slice()
        };
        let code = inner_read(
            inner,
            bytes.as_mut_ptr().cast(),
            BLOCK as c_int,
            (block * BLOCK as u64) as i64,
        );
        if code != ffi::SQLITE_OK {
            // Past the end of the file (a short read) or an error: read just what was
            // asked, so SQLite sees what the default VFS says about it.
            return inner_read(inner, data, amount, offset);
        }
        out.copy_from_slice(&bytes[within..within + len]);
        this.blocks.insert(0, (block, bytes));
        ffi::SQLITE_OK
    }
}

after_writing!(truncate_file, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, (size: i64));

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    unsafe {
        let code = truncate_file(file, size);
        // Whether or not that worked, the tap cannot vouch for what lies past `size`.
        if let Some(tap) = &mut batched_file(file).tap {
            tap.forget_from(size.max(0) as u64);
        }
        code
    }
}
after_writing!(sync, xSync, ffi::SQLITE_IOERR_FSYNC, (flags: c_int));
after_writing!(file_size, xFileSize, ffi::SQLITE_IOERR_FSTAT, (size: *mut i64));
after_writing!(fetch, xFetch, ffi::SQLITE_OK, (offset: i64, amount: c_int, pointer: *mut *mut c_void));
// A lock taken or released ends what was read ahead (see the module's comment).
after_writing!(lock, xLock, ffi::SQLITE_OK, (level: c_int));
after_writing!(unlock, xUnlock, ffi::SQLITE_OK, (level: c_int));
after_writing!(shm_lock, xShmLock, ffi::SQLITE_IOERR_SHMLOCK, (offset: c_int, n: c_int, flags: c_int));
passed_on!(check_reserved_lock, xCheckReservedLock, ffi::SQLITE_OK, (out: *mut c_int));
passed_on!(sector_size, xSectorSize, 4096, ());
passed_on!(device_characteristics, xDeviceCharacteristics, 0, ());
passed_on!(shm_map, xShmMap, ffi::SQLITE_IOERR_SHMMAP, (region: c_int, size: c_int, extend: c_int, pointer: *mut *mut c_void));
passed_on!(shm_unmap, xShmUnmap, ffi::SQLITE_OK, (delete: c_int));
passed_on!(unfetch, xUnfetch, ffi::SQLITE_OK, (offset: i64, pointer: *mut c_void));

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    unsafe {
        let (methods, inner) = batched_file(file).inner_methods();
        if let Some(barrier) = methods.xShmBarrier {
            barrier(inner);
        }
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};
