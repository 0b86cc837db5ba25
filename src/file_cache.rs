//! Each loop's copies of the small static files it read in the last second: a file
//! asked for again and again (a stylesheet, a favicon, the comparison's 6-byte file)
//! is answered from memory, without the open, fstat, read and close each request
//! would otherwise cost. A file changed on disk is seen within [`FRESH_FOR`], as a
//! moved or removed one is by the path cache in `route`; lighttpd's stat cache and
//! nginx's `open_file_cache` trade the same way. `--file-cache` bounds the copies
//! per loop (0: none kept).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::logger::Logger;
use crate::static_files::Validators;

/// How long a copy is sent without looking at the file again.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// Files up to this size are kept, and go out in the same write as the head; larger
/// ones are sent with sendfile(2) each time.
pub const MAX_FILE: u64 = 64 * 1024;

/// A cache that fills up says so at most this often (per loop).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// `--file-cache`: what a loop may keep, and where to say it filled up.
pub struct Budget<'a> {
    /// Bytes of copies (and their paths) per loop; past it the loop starts over, so
    /// a client walking many files cannot make it grow.
    pub max: u64,
    pub log: &'a Logger,
}

/// A file as it was when read: its validators and bytes come from the same open file.
#[derive(Debug)]
pub struct Snapshot {
    pub validators: Validators,
    pub content_type: String,
    pub body: Vec<u8>,
}

struct Kept {
    at: Instant,
    copy: Rc<Snapshot>,
}

#[derive(Default)]
struct Cache {
    bytes: u64,
    files: HashMap<PathBuf, Kept>,
    warned: Option<Instant>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::default();
}

/// The copy of `path` read less than [`FRESH_FOR`] ago, if there is one.
pub fn get(path: &Path) -> Option<Rc<Snapshot>> {
    CACHE.with(|c| {
        let c = c.borrow();
        let kept = c.files.get(path)?;
        (kept.at.elapsed() < FRESH_FOR).then(|| kept.copy.clone())
    })
}

/// Keeps `copy` of `path` (its body at most [`MAX_FILE`] bytes) within `budget`, and
/// hands it back.
pub fn put(path: &Path, copy: Snapshot, budget: &Budget<'_>) -> Rc<Snapshot> {
    let copy = Rc::new(copy);
    let size = kept_size(path, &copy);
    if size > budget.max {
        return copy;
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(old) = c.files.remove(path) {
            c.bytes -= kept_size(path, &old.copy);
        }
        if c.bytes + size > budget.max {
            c.files.clear();
            c.bytes = 0;
            if c.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                c.warned = Some(Instant::now());
                budget.log.log(&format!(
                    "[file-cache] this loop's copies of small files reached --file-cache {}; \
                     starting over (said at most once a minute)",
                    bytesize::ByteSize(budget.max).display().iec()
                ));
            }
        }
        let kept = Kept {
            at: Instant::now(),
            copy: copy.clone(),
        };
        c.files.insert(path.to_path_buf(), kept);
        c.bytes += size;
    });
    copy
}

fn kept_size(path: &Path, copy: &Snapshot) -> u64 {
    (copy.body.len() + path.as_os_str().len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logger::LogTarget;
    use std::sync::{Arc, Mutex};
    use std::time::UNIX_EPOCH;

    fn copy(body: &[u8]) -> Snapshot {
        Snapshot {
            validators: Validators::new(body.len() as u64, UNIX_EPOCH),
            content_type: "text/plain".into(),
            body: body.to_vec(),
        }
    }

    fn bytes() -> u64 {
        CACHE.with(|c| c.borrow().bytes)
    }

    fn memory_log() -> (Logger, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let log = Logger::open(&LogTarget::Memory(lines.clone()), None).unwrap();
        (log, lines)
    }

    #[test]
    fn a_copy_is_kept_and_replaced() {
        let (log, _) = memory_log();
        let budget = Budget {
            max: 1 << 20,
            log: &log,
        };
        let p = Path::new("/www/a.txt");
        assert!(get(p).is_none());
        put(p, copy(b"one"), &budget);
        assert_eq!(get(p).unwrap().body, b"one");
        put(p, copy(b"two!"), &budget);
        assert_eq!(get(p).unwrap().body, b"two!");
        assert_eq!(bytes(), 4 + p.as_os_str().len() as u64);
    }

    #[test]
    fn the_cache_starts_over_past_its_budget_and_zero_keeps_nothing() {
        let (log, lines) = memory_log();
        let budget = Budget {
            max: 200_000,
            log: &log,
        };
        let big = vec![0u8; MAX_FILE as usize];
        // Three copies fit; the fourth and the seventh start over.
        for i in 0..7 {
            put(&PathBuf::from(format!("/www/{i}")), copy(&big), &budget);
            assert!(bytes() <= budget.max);
        }
        assert!(
            get(Path::new("/www/0")).is_none(),
            "the first went with the rest"
        );
        assert!(get(Path::new("/www/6")).is_some());
        // Two fresh starts, one line: at most one a minute.
        let said = lines.lock().unwrap().clone();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("--file-cache 195.3 KiB"), "{said:?}");
        let none = Budget { max: 0, log: &log };
        put(Path::new("/www/x"), copy(b"x"), &none);
        assert!(get(Path::new("/www/x")).is_none());
    }
}
