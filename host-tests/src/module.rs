//! Finding, compiling and linking the filter module. The module is compiled once
//! per test process (cached by file identity or content hash) and every VM is a
//! cheap instantiation of it, like Envoy's workers share one compiled module.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use wasmtime::{Config, Engine, Extern, ExternType, InstancePre, Linker, Module, Store};

use crate::error::{HostError, BUILD_COMMAND};
use crate::host::HostShared;
use crate::state::VmState;
use crate::sync::lock;
use crate::{abi, stubs, wasi};

/// Environment variable that overrides where the quota filter's `.wasm` is.
pub const WASM_ENV: &str = "QUOTA_FILTER_WASM";

/// Epoch ticks a single guest call may run before it is interrupted (a trap),
/// so a filter stuck in a loop fails its test instead of hanging it.
pub(crate) const CALL_DEADLINE_TICKS: u64 = 300;
const EPOCH_TICK: Duration = Duration::from_millis(100);

/// Where the module comes from.
#[derive(Clone, Debug)]
pub enum ModuleSource {
    File(PathBuf),
    Bytes { label: String, bytes: Arc<Vec<u8>> },
}

impl ModuleSource {
    /// The quota filter: `$QUOTA_FILTER_WASM`, or
    /// `<workspace>/target/wasm32-wasip1/release/quota_filter.wasm`.
    pub fn quota_filter() -> ModuleSource {
        ModuleSource::File(quota_filter_path())
    }
}

/// The path [`ModuleSource::quota_filter`] loads.
pub fn quota_filter_path() -> PathBuf {
    match std::env::var_os(WASM_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("wasm32-wasip1")
            .join("release")
            .join("quota_filter.wasm"),
    }
}

/// A compiled module with its imports resolved, ready to instantiate.
pub(crate) struct Prepared {
    pub pre: InstancePre<VmState>,
    /// Imports linked to stubs, as `module::name`.
    pub stubbed: Vec<String>,
}

/// The engine shared by every VM of the process.
pub(crate) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // `HOST_TESTS_PERFMAP=1`: write /tmp/perf-<pid>.map so `perf report`
        // names the module's functions (a per-function profile of the filter).
        if std::env::var_os("HOST_TESTS_PERFMAP").is_some_and(|v| v != "0") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        // `HOST_TESTS_FUEL=1`: count the module's instructions
        // ([`crate::Vm::instructions`]), a measure of its own work that does not
        // drift with the machine's speed.
        if fuel_counted() {
            config.consume_fuel(true);
        }
        let engine = Engine::new(&config).unwrap_or_else(|_| Engine::default());
        let ticker = engine.clone();
        let _ = std::thread::Builder::new().name("wasm-epoch".into()).spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            ticker.increment_epoch();
        });
        engine
    })
}

/// Whether the engine counts fuel (`HOST_TESTS_FUEL=1`).
pub(crate) fn fuel_counted() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("HOST_TESTS_FUEL").is_some_and(|v| v != "0"))
}

type Cell = Arc<OnceLock<Result<Arc<Prepared>, HostError>>>;

/// Compiles and links `source`, once per process.
pub(crate) fn prepare(source: &ModuleSource) -> Result<Arc<Prepared>, HostError> {
    static CACHE: OnceLock<Mutex<HashMap<String, Cell>>> = OnceLock::new();
    let key = cache_key(source)?;
    let cell = lock(CACHE.get_or_init(Default::default)).entry(key).or_default().clone();
    cell.get_or_init(|| compile(source).map(Arc::new)).clone()
}

fn cache_key(source: &ModuleSource) -> Result<String, HostError> {
    match source {
        ModuleSource::File(path) => {
            let meta = std::fs::metadata(path)
                .map_err(|_| HostError::WasmMissing { path: path.clone(), build_command: BUILD_COMMAND.to_string() })?;
            let modified =
                meta.modified().ok().and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).unwrap_or_default();
            Ok(format!("file:{}:{}:{}", path.display(), meta.len(), modified.as_nanos()))
        }
        ModuleSource::Bytes { bytes, .. } => {
            let mut hasher = DefaultHasher::new();
            bytes.hash(&mut hasher);
            Ok(format!("bytes:{:x}:{}", hasher.finish(), bytes.len()))
        }
    }
}

fn compile(source: &ModuleSource) -> Result<Prepared, HostError> {
    let (path, bytes) = match source {
        ModuleSource::File(path) => {
            let bytes =
                std::fs::read(path).map_err(|e| HostError::Compile { path: path.clone(), message: e.to_string() })?;
            (path.clone(), bytes)
        }
        ModuleSource::Bytes { label, bytes } => (PathBuf::from(label), bytes.to_vec()),
    };
    let engine = engine();
    let module = Module::new(engine, &bytes)
        .map_err(|e| HostError::Compile { path: path.clone(), message: format!("{e:?}") })?;
    link(engine, &module).map_err(|e| HostError::Instantiate { message: format!("{}: {e:?}", path.display()) })
}

fn link(engine: &Engine, module: &Module) -> wasmtime::Result<Prepared> {
    let mut linker: Linker<VmState> = Linker::new(engine);
    abi::link(&mut linker)?;
    wasi::link(&mut linker)?;
    linker.allow_shadowing(true);

    // A throwaway store, only to look at the linker's definitions.
    let mut store = Store::new(engine, VmState::new(Arc::new(HostShared::detached()), u32::MAX));
    let mut stubbed = Vec::new();
    for import in module.imports() {
        let ExternType::Func(wanted) = import.ty() else {
            return Err(wasmtime::Error::msg(format!(
                "the module imports {}::{} which is not a function; a proxy-wasm filter \
                 exports its memory instead",
                import.module(),
                import.name()
            )));
        };
        let fits = match linker.get_by_import(&mut store, &import) {
            Some(Extern::Func(func)) => func.ty(&store).matches(&wanted),
            _ => false,
        };
        if !fits {
            stubs::link_stub(&mut linker, import.module(), import.name(), wanted)?;
            stubbed.push(format!("{}::{}", import.module(), import.name()));
        }
    }
    let pre = linker.instantiate_pre(module)?;
    Ok(Prepared { pre, stubbed })
}
