//! Parses the attribute's arguments: `key = "...", ttl = "5m", ...`.
//!
//! Each value is parsed on its own, so a bad value, an unknown name or a duplicate is reported and
//! parsing goes on with the next argument: one build shows every mistake.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::{Ident, Lit, LitStr, Path, Token};

use crate::errors::Errors;

mod kw {
    syn::custom_keyword!(key);
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(lock_ttl);
    syn::custom_keyword!(timeout);
    syn::custom_keyword!(jitter);
    syn::custom_keyword!(codec);
    syn::custom_keyword!(absent_ttl);
    syn::custom_keyword!(unlock_threshold);
    syn::custom_keyword!(backoff_min);
    syn::custom_keyword!(backoff_max);
    syn::custom_keyword!(fallback_to_source);
    syn::custom_keyword!(name);
    syn::custom_keyword!(stale_for);
    syn::custom_keyword!(stale_retry);
    syn::custom_keyword!(fetch_timeout);
    syn::custom_keyword!(fetch_soft_timeout);
    syn::custom_keyword!(refresh_ahead);
    syn::custom_keyword!(refresh_beta);
    syn::custom_keyword!(near);
    syn::custom_keyword!(near_max_age);
}

/// Every argument, in the order the error messages list them.
const NAMES: &str = "`key`, `ttl`, `absent_ttl`, `lock_ttl`, `timeout`, `jitter`, `backoff_min`, \
                     `backoff_max`, `unlock_threshold`, `fallback_to_source`, `stale_for`, \
                     `stale_retry`, `fetch_timeout`, `fetch_soft_timeout`, `refresh_ahead`, \
                     `refresh_beta`, `near`, `near_max_age`, `name`, `codec` or `crate`";

/// The arguments as written; values are checked by `validate`. `None` means not given.
#[derive(Default)]
pub(crate) struct Args {
    /// `key = "widgets:{{{id}}}"`.
    pub(crate) key: Option<LitStr>,
    /// `ttl = "5m"` or `"none"`.
    pub(crate) ttl: Option<LitStr>,
    /// `lock_ttl = "5s"`.
    pub(crate) lock_ttl: Option<LitStr>,
    /// `timeout = "30s"`.
    pub(crate) timeout: Option<LitStr>,
    /// `jitter = 0.2`; any literal, so that `jitter = 0` gets a precise message.
    pub(crate) jitter: Option<Lit>,
    /// `absent_ttl = "30s"`.
    pub(crate) absent_ttl: Option<LitStr>,
    /// `unlock_threshold = "10ms"`.
    pub(crate) unlock_threshold: Option<LitStr>,
    /// `backoff_min = "25ms"`.
    pub(crate) backoff_min: Option<LitStr>,
    /// `backoff_max = "1s"`.
    pub(crate) backoff_max: Option<LitStr>,
    /// `fallback_to_source = true`.
    pub(crate) fallback_to_source: Option<syn::LitBool>,
    /// `stale_for = "1h"`.
    pub(crate) stale_for: Option<LitStr>,
    /// `stale_retry = "5s"`.
    pub(crate) stale_retry: Option<LitStr>,
    /// `fetch_timeout = "2s"`.
    pub(crate) fetch_timeout: Option<LitStr>,
    /// `fetch_soft_timeout = "200ms"`.
    pub(crate) fetch_soft_timeout: Option<LitStr>,
    /// `refresh_ahead = true`.
    pub(crate) refresh_ahead: Option<syn::LitBool>,
    /// `refresh_beta = 1.0`; any literal, as `jitter`.
    pub(crate) refresh_beta: Option<Lit>,
    /// `near = "10000"` or `near = 10000`; any literal, so that `near = "0"` gets a precise
    /// message.
    pub(crate) near: Option<Lit>,
    /// `near_max_age = "30s"`.
    pub(crate) near_max_age: Option<LitStr>,
    /// Where `near_max_age` is written: given without `near`, it is refused there.
    pub(crate) near_max_age_at: Option<Span>,
    /// `name = "widgets"`.
    pub(crate) name: Option<LitStr>,
    /// `codec = ruecache::Raw`.
    pub(crate) codec: Option<Path>,
    /// `crate = "my_reexport::ruecache"`.
    pub(crate) krate: Option<LitStr>,
    /// The names given so far, valid value or not: for duplicates, and so that a bad `key` is
    /// not also reported as missing.
    pub(crate) given: Vec<&'static str>,
}

impl Args {
    /// Parses the attribute's arguments, pushing every mistake to `errors` and keeping the rest.
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Self {
        let mut args = Self::default();
        let parser = |input: ParseStream<'_>| {
            while !input.is_empty() {
                args.parse_one(input, errors)?;
                if !input.is_empty() {
                    input.parse::<Token![,]>()?;
                }
            }
            Ok(())
        };
        if let Err(error) = parser.parse2(tokens) {
            errors.push(error);
        }
        args
    }

    fn parse_one(&mut self, input: ParseStream<'_>, errors: &mut Errors) -> syn::Result<()> {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::key) {
            arg::<kw::key, _>(input, "key", STRING, &mut self.key, &mut self.given, errors)
        } else if lookahead.peek(kw::ttl) {
            arg::<kw::ttl, _>(
                input,
                "ttl",
                DURATION,
                &mut self.ttl,
                &mut self.given,
                errors,
            )
        } else if lookahead.peek(kw::lock_ttl) {
            let slot = &mut self.lock_ttl;
            arg::<kw::lock_ttl, _>(input, "lock_ttl", DURATION, slot, &mut self.given, errors)
        } else if lookahead.peek(kw::timeout) {
            let slot = &mut self.timeout;
            arg::<kw::timeout, _>(input, "timeout", DURATION, slot, &mut self.given, errors)
        } else if lookahead.peek(kw::jitter) {
            let slot = &mut self.jitter;
            arg::<kw::jitter, _>(input, "jitter", FRACTION, slot, &mut self.given, errors)
        } else if lookahead.peek(kw::absent_ttl) {
            let slot = &mut self.absent_ttl;
            arg::<kw::absent_ttl, _>(input, "absent_ttl", DURATION, slot, &mut self.given, errors)
        } else if lookahead.peek(kw::unlock_threshold) {
            let slot = &mut self.unlock_threshold;
            let name = "unlock_threshold";
            arg::<kw::unlock_threshold, _>(input, name, DURATION, slot, &mut self.given, errors)
        } else if lookahead.peek(kw::backoff_min) {
            let slot = &mut self.backoff_min;
            arg::<kw::backoff_min, _>(
                input,
                "backoff_min",
                DURATION,
                slot,
                &mut self.given,
                errors,
            )
        } else if lookahead.peek(kw::backoff_max) {
            let slot = &mut self.backoff_max;
            arg::<kw::backoff_max, _>(
                input,
                "backoff_max",
                DURATION,
                slot,
                &mut self.given,
                errors,
            )
        } else if lookahead.peek(kw::fallback_to_source) {
            let slot = &mut self.fallback_to_source;
            let name = "fallback_to_source";
            arg::<kw::fallback_to_source, _>(input, name, BOOL, slot, &mut self.given, errors)
        } else if lookahead.peek(kw::stale_for) {
            let slot = &mut self.stale_for;
            arg::<kw::stale_for, _>(input, "stale_for", DURATION, slot, &mut self.given, errors)
        } else if lookahead.peek(kw::stale_retry) {
            let slot = &mut self.stale_retry;
            let name = "stale_retry";
            arg::<kw::stale_retry, _>(input, name, DURATION, slot, &mut self.given, errors)
        } else if lookahead.peek(kw::fetch_timeout) {
            let slot = &mut self.fetch_timeout;
            let name = "fetch_timeout";
            arg::<kw::fetch_timeout, _>(input, name, DURATION, slot, &mut self.given, errors)
        } else if lookahead.peek(kw::fetch_soft_timeout) {
            let slot = &mut self.fetch_soft_timeout;
            let name = "fetch_soft_timeout";
            arg::<kw::fetch_soft_timeout, _>(input, name, DURATION, slot, &mut self.given, errors)
        } else if lookahead.peek(kw::refresh_ahead) {
            let slot = &mut self.refresh_ahead;
            let name = "refresh_ahead";
            arg::<kw::refresh_ahead, _>(input, name, BOOL, slot, &mut self.given, errors)
        } else if lookahead.peek(kw::refresh_beta) {
            let slot = &mut self.refresh_beta;
            let name = "refresh_beta";
            arg::<kw::refresh_beta, _>(input, name, BETA, slot, &mut self.given, errors)
        } else if lookahead.peek(kw::near) {
            arg::<kw::near, _>(input, "near", NEAR, &mut self.near, &mut self.given, errors)
        } else if lookahead.peek(kw::near_max_age) {
            self.near_max_age_at.get_or_insert(input.span());
            let slot = &mut self.near_max_age;
            let name = "near_max_age";
            arg::<kw::near_max_age, _>(input, name, DURATION, slot, &mut self.given, errors)
        } else if lookahead.peek(kw::name) {
            arg::<kw::name, _>(input, "name", NAME, &mut self.name, &mut self.given, errors)
        } else if lookahead.peek(kw::codec) {
            arg::<kw::codec, _>(
                input,
                "codec",
                CODEC,
                &mut self.codec,
                &mut self.given,
                errors,
            )
        } else if lookahead.peek(Token![crate]) {
            let slot = &mut self.krate;
            arg::<Token![crate], _>(input, "crate", CRATE, slot, &mut self.given, errors)
        } else if input.peek(Ident::peek_any) {
            let name = input.call(Ident::parse_any)?;
            errors.push(syn::Error::new(
                name.span(),
                format!("unknown argument `{name}`, expected {NAMES}"),
            ));
            value_tokens(input)?;
            Ok(())
        } else {
            let found: TokenTree = input.parse()?;
            errors.push(syn::Error::new(
                found.span(),
                format!("expected an argument such as `key = \"widgets:{{{{{{id}}}}}}\"`, found `{found}`; the arguments are {NAMES}"),
            ));
            value_tokens(input)?;
            Ok(())
        }
    }
}

/// What each argument expects, for the message when its value does not parse.
const STRING: &str = "a string literal, such as `key = \"widgets:{{{id}}}\"`";
const DURATION: &str = "a duration string, such as `\"5m\"`, `\"1h30m\"` or `\"500ms\"`";
const FRACTION: &str = "a fraction between `0.0` and `1.0`, such as `0.2`";
const CODEC: &str = "a codec type, such as `ruecache::Raw`";
const BOOL: &str = "`true` or `false`";
const BETA: &str = "a float above `0.0`, such as `1.0`";
pub(crate) const NEAR: &str =
    "the most ids kept in process memory, a whole number of at least 1, such as `near = \"10000\"`";
const NAME: &str = "a string literal, such as `name = \"widgets\"`";
const CRATE: &str = "the path of `ruecache` as a string, such as `crate = \"my_crate::ruecache\"`";

/// Parses `name = value` into `slot`: the name is a keyword `K`, the value everything up to the
/// next top-level comma, parsed as `V`.
fn arg<K, V>(
    input: ParseStream<'_>,
    name: &'static str,
    expected: &str,
    slot: &mut Option<V>,
    given: &mut Vec<&'static str>,
    errors: &mut Errors,
) -> syn::Result<()>
where
    K: Parse + ToTokens,
    V: Parse,
{
    let keyword: K = input.parse()?;
    if !set_once(given, name, &keyword, errors) {
        value_tokens(input)?;
        return Ok(());
    }
    let Some(eq) = input.parse::<Option<Token![=]>>()? else {
        errors.push(syn::Error::new_spanned(
            &keyword,
            format!("expected `=` and a value after `{name}`, {expected}"),
        ));
        value_tokens(input)?;
        return Ok(());
    };
    let tokens = value_tokens(input)?;
    if tokens.is_empty() {
        errors.push(syn::Error::new(
            eq.span,
            format!("missing value for `{name}`, expected {expected}"),
        ));
        return Ok(());
    }
    match syn::parse2::<V>(tokens.clone()) {
        Ok(value) => *slot = Some(value),
        // A bare path, as the compiler suggests when a quoted one does not resolve: say how to
        // quote it.
        Err(_) if name == "crate" && syn::parse2::<Path>(tokens.clone()).is_ok() => {
            let path: String = tokens.to_string().split_whitespace().collect();
            errors.push(syn::Error::new_spanned(
                tokens,
                format!("`crate` expects the path as a string: `crate = \"{path}\"`"),
            ));
        }
        Err(_) => errors.push(syn::Error::new_spanned(
            tokens,
            format!("`{name}` expects {expected}"),
        )),
    }
    Ok(())
}

/// Records that `name` is given; `false` (and a duplicate reported on this occurrence's name) if
/// it already was.
fn set_once(
    given: &mut Vec<&'static str>,
    name: &'static str,
    name_token: &dyn ToTokens,
    errors: &mut Errors,
) -> bool {
    if given.contains(&name) {
        errors.push(syn::Error::new_spanned(
            name_token,
            format!("duplicate argument `{name}`: it is already given, remove one of the two"),
        ));
        return false;
    }
    given.push(name);
    true
}

/// The tokens up to the next comma outside brackets and generic arguments (`codec = C<A, B>`).
fn value_tokens(input: ParseStream<'_>) -> syn::Result<TokenStream> {
    input.step(|cursor| {
        let mut tokens = TokenStream::new();
        let mut rest = *cursor;
        let mut angle_depth = 0usize;
        while let Some((tt, next)) = rest.token_tree() {
            if let TokenTree::Punct(p) = &tt {
                match p.as_char() {
                    ',' if angle_depth == 0 => break,
                    '<' => angle_depth += 1,
                    '>' => angle_depth = angle_depth.saturating_sub(1),
                    _ => {}
                }
            }
            tokens.extend([tt]);
            rest = next;
        }
        Ok((tokens, rest))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse(tokens: TokenStream) -> (Args, Vec<String>) {
        let mut errors = Errors::default();
        let args = Args::parse(tokens, &mut errors);
        let messages = match errors.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        };
        (args, messages)
    }

    #[test]
    fn parses_every_argument() {
        let (args, errors) = parse(quote! {
            key = "w:{id}", ttl = "5m", lock_ttl = "10s", timeout = "1m",
            jitter = 0.1, codec = ruecache::Raw, crate = "x::ruecache", absent_ttl = "30s",
            unlock_threshold = "0ms", backoff_min = "10ms", backoff_max = "2s",
            fallback_to_source = true, name = "widgets", stale_for = "1h", stale_retry = "1s",
            fetch_timeout = "2s", fetch_soft_timeout = "200ms", refresh_ahead = true,
            refresh_beta = 2.0, near = "10000", near_max_age = "10s",
        });
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(args.key.unwrap().value(), "w:{id}");
        assert_eq!(args.ttl.unwrap().value(), "5m");
        assert_eq!(args.lock_ttl.unwrap().value(), "10s");
        assert_eq!(args.timeout.unwrap().value(), "1m");
        assert!(args.jitter.is_some());
        assert!(args.codec.is_some());
        assert_eq!(args.krate.unwrap().value(), "x::ruecache");
        assert_eq!(args.absent_ttl.unwrap().value(), "30s");
        assert_eq!(args.unlock_threshold.unwrap().value(), "0ms");
        assert_eq!(args.backoff_min.unwrap().value(), "10ms");
        assert_eq!(args.backoff_max.unwrap().value(), "2s");
        assert!(args.fallback_to_source.unwrap().value());
        assert_eq!(args.name.unwrap().value(), "widgets");
        assert_eq!(args.stale_for.unwrap().value(), "1h");
        assert_eq!(args.stale_retry.unwrap().value(), "1s");
        assert_eq!(args.fetch_timeout.unwrap().value(), "2s");
        assert_eq!(args.fetch_soft_timeout.unwrap().value(), "200ms");
        assert!(args.refresh_ahead.unwrap().value());
        assert!(args.refresh_beta.is_some());
        assert!(matches!(args.near, Some(Lit::Str(lit)) if lit.value() == "10000"));
        assert_eq!(args.near_max_age.unwrap().value(), "10s");
        assert!(args.near_max_age_at.is_some());
    }

    #[test]
    fn reports_every_mistake() {
        let (args, errors) = parse(quote! {
            tll = "5m", key = 5, ttl = "1m", ttl = "2m", jitter, codec = , 42, lock_ttl = "1s"
        });
        assert_eq!(
            errors,
            [
                "unknown argument `tll`, expected `key`, `ttl`, `absent_ttl`, `lock_ttl`, `timeout`, `jitter`, `backoff_min`, `backoff_max`, `unlock_threshold`, `fallback_to_source`, `stale_for`, `stale_retry`, `fetch_timeout`, `fetch_soft_timeout`, `refresh_ahead`, `refresh_beta`, `near`, `near_max_age`, `name`, `codec` or `crate`",
                "`key` expects a string literal, such as `key = \"widgets:{{{id}}}\"`",
                "duplicate argument `ttl`: it is already given, remove one of the two",
                "expected `=` and a value after `jitter`, a fraction between `0.0` and `1.0`, such as `0.2`",
                "missing value for `codec`, expected a codec type, such as `ruecache::Raw`",
                "expected an argument such as `key = \"widgets:{{{id}}}\"`, found `42`; the arguments are `key`, `ttl`, `absent_ttl`, `lock_ttl`, `timeout`, `jitter`, `backoff_min`, `backoff_max`, `unlock_threshold`, `fallback_to_source`, `stale_for`, `stale_retry`, `fetch_timeout`, `fetch_soft_timeout`, `refresh_ahead`, `refresh_beta`, `near`, `near_max_age`, `name`, `codec` or `crate`",
            ]
        );
        assert_eq!(args.ttl.unwrap().value(), "1m");
        assert_eq!(args.lock_ttl.unwrap().value(), "1s");
    }
}
