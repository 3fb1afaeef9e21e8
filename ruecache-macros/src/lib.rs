//! The `#[cached_batch]` attribute of [`ruecache`](https://docs.rs/ruecache).
//!
//! This crate is an implementation detail: depend on `ruecache`, which re-exports the attribute
//! as `ruecache::cached_batch` (with its default `macros` feature) and provides everything the
//! expansion calls. Its version is pinned by `ruecache`, so the two always match.

mod args;
mod duration;
mod errors;
mod expand;
mod template;
mod validate;

use proc_macro::TokenStream;

/// DOCS
#[proc_macro_attribute]
pub fn cached_batch(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(args.into(), item.into()).into()
}
