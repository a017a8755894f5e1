//! Wire protocols. `native` is protocol version 1 (PROTOCOL.md); it is the
//! only code that knows frame types and field names. Adapters for other chat
//! clients' protocols would sit beside it and map onto the same model.

pub mod close;
pub mod native;
