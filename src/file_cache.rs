//! Each loop's copies of the small static files it read in the last second: a file
//! asked for again and again (a stylesheet, a favicon, the comparison's 6-byte file)
//! is answered from memory, without the open, fstat, read and close each request
//! would otherwise cost. A file changed on disk is seen within [`FRESH_FOR`], as a
//! moved or removed one is by the path cache in `route`; lighttpd's stat cache and
//! nginx's `open_file_cache` trade the same way.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::static_files::Validators;

/// How long a copy is sent without looking at the file again.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// Files up to this size are kept, and go out in the same write as the head; larger
/// ones are sent with sendfile(2) each time.
pub const MAX_FILE: u64 = 64 * 1024;

/// Past this many bytes kept, a loop's cache starts over: a client walking many files
/// cannot make it grow without bound (at most this much per loop).
const MAX_BYTES: usize = 4 * 1024 * 1024;

/// A file as it was when read: its validators and bytes come from the same open file.
#[derive(Debug)]
pub struct Copy {
    pub validators: Validators,
    pub content_type: String,
    pub body: Vec<u8>,
}

struct Kept {
    at: Instant,
    copy: Rc<Copy>,
}

#[derive(Default)]
struct Cache {
    bytes: usize,
    files: HashMap<PathBuf, Kept>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::default();
}

/// The copy of `path` read less than [`FRESH_FOR`] ago, if there is one.
pub fn get(path: &Path) -> Option<Rc<Copy>> {
    CACHE.with(|c| {
        let c = c.borrow();
        let kept = c.files.get(path)?;
        (kept.at.elapsed() < FRESH_FOR).then(|| kept.copy.clone())
    })
}

/// Keeps `copy` of `path` (its body at most [`MAX_FILE`] bytes) and hands it back.
pub fn put(path: &Path, copy: Copy) -> Rc<Copy> {
    let copy = Rc::new(copy);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let size = copy.body.len() + path.as_os_str().len();
        if c.bytes + size > MAX_BYTES {
            c.files.clear();
            c.bytes = 0;
        }
        let kept = Kept {
            at: Instant::now(),
            copy: copy.clone(),
        };
        if let Some(old) = c.files.insert(path.to_path_buf(), kept) {
            c.bytes -= old.copy.body.len() + path.as_os_str().len();
        }
        c.bytes += size;
    });
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn copy(body: &[u8]) -> Copy {
        Copy {
            validators: Validators::new(body.len() as u64, UNIX_EPOCH),
            content_type: "text/plain".into(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn a_copy_is_kept_and_replaced() {
        let p = Path::new("/www/a.txt");
        assert!(get(p).is_none());
        put(p, copy(b"one"));
        assert_eq!(get(p).unwrap().body, b"one");
        put(p, copy(b"two!"));
        assert_eq!(get(p).unwrap().body, b"two!");
        CACHE.with(|c| assert_eq!(c.borrow().bytes, 4 + p.as_os_str().len()));
    }

    #[test]
    fn the_cache_starts_over_past_its_bound() {
        let big = vec![0u8; MAX_FILE as usize];
        for i in 0..(MAX_BYTES / big.len() + 2) {
            put(&PathBuf::from(format!("/www/{i}")), copy(&big));
            CACHE.with(|c| assert!(c.borrow().bytes <= MAX_BYTES));
        }
        assert!(
            get(Path::new("/www/0")).is_none(),
            "the first went with the rest"
        );
    }
}
