//! One request's process start at executor level: spawn the script the way the CGI
//! executor does (clean environment, own process group, cwd, stdin /dev/null), read its
//! answer to EOF and reap it — what every CGI request pays before any HTTP. Plus the
//! memory ballast that makes the bench process look like a big server.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cgi_testbed::gateway::env::MetaVars;
use cgi_testbed::process::{Child, Registry};
use cgi_testbed::spawn::{self, Command, Input, SpawnMode};

use super::inputs;

pub const MODES: [(&str, SpawnMode); 2] = [
    ("posix_spawn", SpawnMode::PosixSpawn),
    ("fork", SpawnMode::Fork),
];

/// A hello program to start, by language.
pub struct Program {
    pub label: &'static str,
    pub path: PathBuf,
}

/// The hello programs, in a temp dir that lives as long as this.
pub struct Programs {
    pub dir: tempfile::TempDir,
    pub list: Vec<Program>,
    /// Why a language is missing, to print.
    pub skipped: Vec<String>,
}

const PERL_HELLO: &str =
    "#!/usr/bin/perl\nprint \"Content-Type: text/plain\\r\\n\\r\\nHello from Perl\\n\";\n";
const PYTHON_HELLO: &str = "#!/usr/bin/python3\nimport sys\nsys.stdout.write(\"Content-Type: text/plain\\r\\n\\r\\nHello from Python\\n\")\n";

/// The compiled hello (`cgi-bin/hello-rs`, answering as CGI since stdin is not a
/// socket), `cgi-bin/hello` (sh), and tiny perl and python3 scripts.
pub fn programs() -> Programs {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut list = vec![
        Program {
            label: "rust",
            path: super::copy_bundled("hello-rs", dir.path()),
        },
        Program {
            label: "sh",
            path: super::copy_bundled("hello", dir.path()),
        },
    ];
    let mut skipped = Vec::new();
    for (label, interpreter, name, text) in [
        ("perl", "/usr/bin/perl", "hello.pl", PERL_HELLO),
        ("python", "/usr/bin/python3", "hello.py", PYTHON_HELLO),
    ] {
        if Path::new(interpreter).exists() {
            let path = super::write_script(dir.path(), name, text);
            list.push(Program { label, path });
        } else {
            skipped.push(format!("{label}: {interpreter} not found, skipped"));
        }
    }
    Programs { dir, list, skipped }
}

/// Starts programs and reaps them; holds the environment a GET request gives a script.
pub struct Runner {
    registry: Arc<Registry>,
    env: MetaVars,
}

impl Default for Runner {
    fn default() -> Self {
        Self::new()
    }
}

impl Runner {
    pub fn new() -> Runner {
        let req = inputs::request();
        Runner {
            registry: Arc::new(Registry::default()),
            env: inputs::meta_variables(&req, &inputs::script(), &inputs::site()),
        }
    }

    /// Spawn, read stdout and stderr to EOF, reap. Returns stdout; panics when the
    /// program cannot start or does not exit 0.
    pub fn run_once(&self, mode: SpawnMode, program: &Path) -> Vec<u8> {
        let cwd = program.parent().unwrap_or(Path::new("/"));
        let spawned = spawn::spawn(
            mode,
            Command {
                program,
                args: Vec::new(),
                env: &self.env,
                cwd,
                input: Input::Null,
                limits: None,
            },
        )
        .unwrap_or_else(|e| panic!("{mode:?} {}: {e}", program.display()));
        let mut child = Child::adopt(spawned.pid, self.registry.clone());
        drop(spawned.stdin);
        let mut out = Vec::with_capacity(256);
        let mut err = Vec::new();
        File::from(spawned.stdout)
            .read_to_end(&mut out)
            .expect("read stdout");
        File::from(spawned.stderr)
            .read_to_end(&mut err)
            .expect("read stderr");
        let exit = child.reap();
        assert!(
            exit.code == 0 && exit.signal.is_none(),
            "{}: {exit}; stderr: {}",
            program.display(),
            String::from_utf8_lossy(&err)
        );
        out
    }
}

/// `mib` MiB of heap with every page written, so it is resident and its page tables
/// exist: what fork has to copy (transparent huge pages only under `madvise`, which a
/// plain Vec does not ask for).
pub struct Ballast(Vec<u8>);

impl Ballast {
    pub fn new(mib: usize) -> Ballast {
        let mut v = vec![0u8; mib << 20];
        for byte in v.iter_mut().step_by(4096) {
            *byte = 1;
        }
        std::hint::black_box(&mut v);
        Ballast(v)
    }

    pub fn mib(&self) -> usize {
        self.0.len() >> 20
    }
}
