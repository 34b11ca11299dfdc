//! Noticing a change of some environment variables in the cost of a few pointer comparisons.
//!
//! Settings are read again whenever one of their variables changes, and the check runs on every
//! task call. `os.environ` keeps its values in a dict of `bytes` (`os.environ._data`), replacing
//! a variable's object whenever it is set; the watch keeps the objects it saw (so none can be
//! freed and its address reused) and compares identities, never contents.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// Watches `keys` of a dict: `changed()` says whether any of them is bound to another object
/// (or added, or removed) since the last call, or since the watch was made.
#[pyclass(module = "taskstash._native")]
pub struct EnvironWatch {
    data: Py<PyDict>,
    keys: Vec<Py<PyAny>>,
    seen: Vec<Option<Py<PyAny>>>,
}

#[pymethods]
impl EnvironWatch {
    #[new]
    fn new(data: Bound<'_, PyDict>, keys: &Bound<'_, PyTuple>) -> PyResult<Self> {
        let keys: Vec<Py<PyAny>> = keys.iter().map(Bound::unbind).collect();
        let seen = Self::read(&data, &keys)?;
        Ok(Self {
            data: data.unbind(),
            keys,
            seen,
        })
    }

    /// Whether a watched key's value changed since the last call; the new values are kept.
    fn changed(&mut self, py: Python<'_>) -> PyResult<bool> {
        let data = self.data.bind(py);
        let mut changed = false;
        for (key, seen) in self.keys.iter().zip(self.seen.iter_mut()) {
            let now = data.get_item(key.bind(py))?;
            let same = match (&now, &*seen) {
                (None, None) => true,
                (Some(now), Some(before)) => now.is(before.bind(py)),
                _ => false,
            };
            if !same {
                *seen = now.map(Bound::unbind);
                changed = true;
            }
        }
        Ok(changed)
    }
}

impl EnvironWatch {
    fn read(data: &Bound<'_, PyDict>, keys: &[Py<PyAny>]) -> PyResult<Vec<Option<Py<PyAny>>>> {
        let py = data.py();
        keys.iter()
            .map(|key| Ok(data.get_item(key.bind(py))?.map(Bound::unbind)))
            .collect()
    }
}
