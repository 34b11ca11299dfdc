//! `taskstash._native`: the glue between Python and the pure-Rust hashing core.
//!
//! This file only extracts arguments, decides when to release the interpreter, maps errors and
//! exports names. The encoding is specified in `encode`, the digests in `hash`, and the walk over
//! Python values in `walk`.

pub mod encode;
pub mod hash;
mod walk;

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

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
    use super::{hash_bytes, hash_key, Hasher, HashingError};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("KEY_FORMAT_VERSION", crate::encode::KEY_FORMAT_VERSION)?;
        m.add("MAX_DEPTH", crate::walk::MAX_DEPTH)?;
        Ok(())
    }
}
