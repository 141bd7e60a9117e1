//! Id newtypes, so a task id is never passed where a worker id belongs.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// One execution of a function; assigned by the store, unique across dispatcher restarts.
    TaskId(u64)
);
id_type!(
    /// A registered function.
    FunctionId(u64)
);
id_type!(
    /// One registration of a worker with one dispatcher process; a worker that
    /// reconnects gets a new id.
    WorkerId(u32)
);
