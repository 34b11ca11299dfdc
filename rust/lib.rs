//! `taskstash._native`: the glue between Python and the pure-Rust hashing core.
//!
//! This file only extracts arguments, decides when to release the interpreter, maps errors and
//! exports names. The encoding is specified in `encode`, the digests in `hash`, and the walk over
//! Python values in `walk`.

pub mod encode;
mod environ;
pub mod hash;
pub mod tally;
mod walk;

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use std::collections::HashMap;
use std::sync::Mutex;

use crate::hash::KeyHasher;
use crate::walk::{WalkError, Walker, DETACH_MIN};

create_exception!(
    _native,
    HashingError,
    PyValueError,
    "A value has no canonical form to hash (unsupported type, self-reference, absurd nesting).\n\n\
     Attributes: `path` (where the value sits, e.g. `config['lock']`) and `type_name`."
);

impl From<WalkError> for PyErr {
    fn from(error: WalkError) -> Self {
        match error {
            WalkError::Interrupted(err) => err,
            WalkError::Unhashable(unhashable) => Python::attach(|py| {
                let path = unhashable.path();
                let err = HashingError::new_err(format!("{path}: {}", unhashable.problem));
                let value = err.value(py);
                // Setting attributes on a fresh exception instance cannot fail in practice; if it
                // did, the message still says everything.
                let _ = value.setattr("path", path);
                let _ = value.setattr("type_name", unhashable.type_name);
                err.set_cause(py, unhashable.cause);
                err
            }),
        }
    }
}

/// Hashes `values` and `named` into a cache key: 32 hex digits of XXH3-128 over their canonical
/// encoding. `reducer(obj) -> (type_name, value)` is called for objects of types the encoder does
/// not know natively.
#[pyfunction]
fn hash_key(
    py: Python<'_>,
    values: &Bound<'_, PyTuple>,
    named: &Bound<'_, PyDict>,
    reducer: &Bound<'_, PyAny>,
) -> PyResult<String> {
    let mut out = KeyHasher::new();
    encode::key_header(&mut out);
    let mut walker = Walker::new(py, reducer);
    walker.positional(values, &mut out)?;
    walker.named(named, &mut out)?;
    Ok(hash::hex(out.finish()))
}

/// Keys the calls of one task: the parts of its key that are the same for every call (its
/// identity, the components of its policy other than the arguments) are kept here, so a call
/// passes only its arguments. `key(names, values)` equals
/// `hash_key(("task", identity, [*before, ("inputs", hash_key((), dict(zip(names, values)))),
/// *after]), {})`.
#[pyclass(frozen, module = "taskstash._native")]
struct CallKeyer {
    identity: String,
    before: Vec<(String, String)>,
    after: Vec<(String, String)>,
}

#[pymethods]
impl CallKeyer {
    #[new]
    fn new(identity: String, before: Vec<(String, String)>, after: Vec<(String, String)>) -> Self {
        Self {
            identity,
            before,
            after,
        }
    }

    fn key(
        &self,
        py: Python<'_>,
        names: &Bound<'_, PyTuple>,
        values: &Bound<'_, PyTuple>,
        reducer: &Bound<'_, PyAny>,
    ) -> PyResult<String> {
        if names.len() != values.len() {
            return Err(PyValueError::new_err(format!(
                "{} names for {} values",
                names.len(),
                values.len()
            )));
        }
        let mut arguments = KeyHasher::new();
        encode::key_header(&mut arguments);
        encode::sized_header(&mut arguments, encode::Tag::Tuple, 0); // no positional values
        Walker::new(py, reducer).named_pairs(names, values, &mut arguments)?;
        let inputs = hash::hex(arguments.finish());
        let components: Vec<(&str, &str)> = self
            .before
            .iter()
            .map(|(label, key)| (label.as_str(), key.as_str()))
            .chain(std::iter::once(("inputs", inputs.as_str())))
            .chain(self.after.iter().map(|(l, k)| (l.as_str(), k.as_str())))
            .collect();
        let mut out = KeyHasher::new();
        encode::task_call(&mut out, &self.identity, components.into_iter());
        Ok(hash::hex(out.finish()))
    }
}

/// Hit counts per key between writes to the index, shared by the threads of a process: one
/// short lock per hit, no Python objects made.
#[pyclass(frozen, module = "taskstash._native")]
struct HitTally {
    tally: Mutex<tally::Tally>,
}

impl HitTally {
    fn locked(&self) -> std::sync::MutexGuard<'_, tally::Tally> {
        // A panic while holding the lock cannot leave the counts inconsistent: keep using them.
        self.tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[pymethods]
impl HitTally {
    #[new]
    fn new() -> Self {
        Self {
            tally: Mutex::new(tally::Tally::default()),
        }
    }

    /// Counts `count` hits of `key`, the last at `last`; returns whether none were pending.
    #[pyo3(signature = (key, last, count = 1))]
    fn add(&self, key: &str, last: f64, count: u64) -> bool {
        self.locked().add(key, count, last)
    }

    fn discard(&self, key: &str) {
        self.locked().discard(key);
    }

    /// The pending hits as `{key: (count, last)}`, leaving none.
    fn take(&self) -> HashMap<String, (u64, f64)> {
        self.locked().take()
    }

    fn __len__(&self) -> usize {
        self.locked().len()
    }
}

/// Feeds `data` to `write`: `bytes` zero-copy, with the interpreter released when large; any other
/// C-contiguous buffer in place, with the interpreter held (it may be mutable).
fn feed<T: Send>(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    write: impl FnOnce(&[u8]) -> T + Send,
) -> PyResult<T> {
    if let Ok(bytes) = data.cast_exact::<PyBytes>() {
        let slice = bytes.as_bytes();
        return Ok(if slice.len() >= DETACH_MIN {
            py.detach(|| write(slice))
        } else {
            write(slice)
        });
    }
    walk::with_contiguous_buffer(data, write)
}

/// XXH3-128 of the bytes of `data` as 32 hex digits (equal to `xxhash.xxh3_128_hexdigest`).
#[pyfunction]
fn hash_bytes(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<String> {
    feed(py, data, |bytes| hash::hex(hash::digest(bytes)))
}

/// An incremental XXH3-128 hasher: the digest of everything passed to `update`.
#[pyclass(module = "taskstash._native")]
struct Hasher {
    state: KeyHasher,
}

#[pymethods]
impl Hasher {
    #[new]
    #[pyo3(signature = (data = None))]
    fn new(py: Python<'_>, data: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let mut hasher = Self {
            state: KeyHasher::new(),
        };
        if let Some(data) = data {
            hasher.update(py, data)?;
        }
        Ok(hasher)
    }

    fn update(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let state = &mut self.state;
        feed(py, data, |bytes| state.write(bytes))
    }

    fn digest<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.state.finish().to_be_bytes())
    }

    fn hexdigest(&mut self) -> String {
        hash::hex(self.state.finish())
    }
}

// Mutable buffers (bytearray, memoryview, numpy arrays) are read in place, which relies on the
// GIL to keep other threads from writing them meanwhile.
#[pymodule(gil_used = true)]
mod _native {
    #[pymodule_export]
    use super::{hash_bytes, hash_key, CallKeyer, Hasher, HashingError, HitTally};
    #[pymodule_export]
    use crate::environ::EnvironWatch;

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("KEY_FORMAT_VERSION", crate::encode::KEY_FORMAT_VERSION)?;
        m.add("MAX_DEPTH", crate::walk::MAX_DEPTH)?;
        Ok(())
    }
}
