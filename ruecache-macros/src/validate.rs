//! Checks the arguments' values and the method's shape; the types themselves are checked by the
//! compiler, through the trait bounds of `ruecache::__private`.

use proc_macro2::Span;
use quote::ToTokens;
use syn::visit::Visit;
use syn::{
    FnArg, GenericArgument, GenericParam, Lit, LitStr, Pat, Path, PathArguments, Receiver,
    ReturnType, Signature, Type, TypeImplTrait,
};

use crate::args::{Args, NEAR};
use crate::duration::{self, Duration};
use crate::errors::Errors;
use crate::template;

/// The validated arguments. A value with a mistake is replaced by a placeholder (the default, or
/// the template `{id}`), so that the companion can still be written next to the errors.
pub(crate) struct Settings<'a> {
    /// The path of the runtime crate given with `crate = "..."`; `None` for `::ruecache`.
    pub(crate) krate: Option<Path>,
    /// The key template's literal pieces around the id slots.
    pub(crate) key_parts: Vec<String>,
    /// Where the `key` literal is, for spans.
    pub(crate) key_span: Span,
    /// Data TTL in milliseconds, `Some(0)` for no expiry, `None` for the default.
    pub(crate) ttl_ms: Option<u64>,
    pub(crate) jitter: Option<f64>,
    pub(crate) lock_ttl_ms: Option<u64>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) absent_ttl_ms: Option<u64>,
    pub(crate) unlock_threshold_ms: Option<u64>,
    pub(crate) backoff_min_ms: Option<u64>,
    pub(crate) backoff_max_ms: Option<u64>,
    pub(crate) fallback_to_source: Option<bool>,
    pub(crate) stale_for_ms: Option<u64>,
    pub(crate) stale_retry_ms: Option<u64>,
    pub(crate) fetch_timeout_ms: Option<u64>,
    pub(crate) fetch_soft_timeout_ms: Option<u64>,
    /// `refresh_ahead = true`: where it is written (errors about the service's `Clone` point
    /// there), and the draw's β.
    pub(crate) refresh: Option<(Span, f64)>,
    /// `near = "10000"`: the near cache's most entries, and its `near_max_age` in milliseconds
    /// (`None` for the default).
    pub(crate) near: Option<(u64, Option<u64>)>,
    /// The cache's name; `None` for the method's name.
    pub(crate) name: Option<String>,
    /// The codec type, `None` for the default (`MsgPack`).
    pub(crate) codec: Option<&'a Path>,
}

/// The parts of the method the expansion needs.
pub(crate) struct Method<'a> {
    /// The `self` of `&self`: generated code says `self` with this token's span so that it is the
    /// method's own `self`. With a mistake in the receiver, the token written (or a new one), for
    /// the companion.
    pub(crate) self_token: syn::token::SelfValue,
    /// The ids parameter: its pattern is the fetch's parameter, its type decides the form.
    pub(crate) ids_pat: &'a Pat,
    pub(crate) ids_ty: &'a Type,
    /// The declared return type.
    pub(crate) ret_ty: &'a Type,
    /// `E` in a return type written `Result<T, E>`, for error spans only: errors about the error
    /// type point there, or at the whole return type when it is an alias such as `AppResult<T>`.
    /// The error type itself is found by the compiler, never by reading names.
    pub(crate) error_ty: Option<&'a Type>,
    /// `T` in a return type written `Result<Map<Id, T>, E>` or `Result<Option<T>, E>`, for error
    /// spans only, as `error_ty`: errors about the value type point there, or at what stands for
    /// it where the signature does not spell it (`AppResult<WidgetMap>` points at `WidgetMap`).
    pub(crate) value_ty: &'a Type,
}

/// Checks every argument's value. Each mistake is pushed to `errors` and its value replaced by a
/// placeholder.
pub(crate) fn settings<'a>(args: &'a Args, errors: &mut Errors) -> Settings<'a> {
    let key = args.key.as_ref();
    if !args.given.contains(&"key") {
        errors.push(syn::Error::new(
            Span::call_site(),
            "missing argument `key`, such as `#[cached_batch(key = \"widgets:{{{id}}}\")]`",
        ));
    }
    let key_parts = key.and_then(|key| {
        errors.check(template::parse(&key.value()).map_err(|reason| {
            syn::Error::new(key.span(), format!("invalid `key` template: {reason}"))
        }))
    });
    let mut duration = |lit: &Option<LitStr>, name, none_allowed| {
        let lit = lit.as_ref()?;
        errors.check(duration_ms(lit, name, none_allowed))
    };
    let ttl_ms = duration(&args.ttl, "ttl", true);
    let lock_ttl_ms = duration(&args.lock_ttl, "lock_ttl", false);
    let timeout_ms = duration(&args.timeout, "timeout", false);
    let absent_ttl_ms = duration(&args.absent_ttl, "absent_ttl", false);
    let unlock_threshold_ms = duration(&args.unlock_threshold, "unlock_threshold", false);
    let backoff_min_ms = duration(&args.backoff_min, "backoff_min", false);
    let backoff_max_ms = duration(&args.backoff_max, "backoff_max", false);
    let stale_for_ms = duration(&args.stale_for, "stale_for", false);
    let stale_retry_ms = duration(&args.stale_retry, "stale_retry", false);
    let fetch_timeout_ms = duration(&args.fetch_timeout, "fetch_timeout", false);
    let fetch_soft_timeout_ms = duration(&args.fetch_soft_timeout, "fetch_soft_timeout", false);
    let near_max_age_ms = duration(&args.near_max_age, "near_max_age", false);
    let name = args.name.as_ref().and_then(|lit| {
        let name = lit.value();
        errors.check(if name.is_empty() {
            Err(syn::Error::new(
                lit.span(),
                "`name` must not be empty, such as `name = \"widgets\"`",
            ))
        } else {
            Ok(name)
        })
    });
    let jitter = args
        .jitter
        .as_ref()
        .and_then(|lit| errors.check(fraction(lit)));
    let beta = args
        .refresh_beta
        .as_ref()
        .and_then(|lit| errors.check(beta(lit)));
    let refresh = match (&args.refresh_ahead, &args.refresh_beta) {
        (Some(on), _) if on.value() => Some((on.span(), beta.unwrap_or(1.0))),
        (_, Some(lit)) => {
            errors.push(syn::Error::new(
                lit.span(),
                "`refresh_beta` tunes refresh-ahead: add `refresh_ahead = true`",
            ));
            None
        }
        _ => None,
    };
    let near_entries = args
        .near
        .as_ref()
        .and_then(|lit| errors.check(near_entries(lit)));
    // A `near` given with a bad value is reported at its value, not as missing.
    let near_missing = !args.given.contains(&"near");
    if let Some(at) = args.near_max_age_at.filter(|_| near_missing) {
        errors.push(syn::Error::new(
            at,
            "`near_max_age` tunes the near cache: add `near = \"<max entries>\"`, such as \
             `near = \"10000\"`",
        ));
    }
    let near = near_entries.map(|entries| (entries, near_max_age_ms));
    let krate = args.krate.as_ref().and_then(|lit| {
        errors.check(lit.parse::<Path>().map_err(|_| {
            syn::Error::new(
                lit.span(),
                format!(
                    "`crate` expects the path of `ruecache`, such as `crate = \"my_crate::ruecache\"`, found `{}`",
                    lit.value()
                ),
            )
        }))
    });
    Settings {
        krate,
        // The placeholder `{id}`.
        key_parts: key_parts.unwrap_or_else(|| vec![String::new(), String::new()]),
        key_span: key.map_or_else(Span::call_site, LitStr::span),
        ttl_ms,
        jitter,
        lock_ttl_ms,
        timeout_ms,
        absent_ttl_ms,
        unlock_threshold_ms,
        backoff_min_ms,
        backoff_max_ms,
        fallback_to_source: args.fallback_to_source.as_ref().map(syn::LitBool::value),
        stale_for_ms,
        stale_retry_ms,
        fetch_timeout_ms,
        fetch_soft_timeout_ms,
        refresh,
        near,
        name,
        codec: args.codec.as_ref(),
    }
}

/// A duration argument in milliseconds; `"none"` is `0` where `none_allowed`.
fn duration_ms(lit: &LitStr, name: &str, none_allowed: bool) -> syn::Result<u64> {
    let fail = |message: String| Err(syn::Error::new(lit.span(), message));
    match duration::parse(&lit.value()) {
        Err(reason) => fail(format!("invalid `{name}`: {reason}")),
        Ok(Duration::Never) if none_allowed => Ok(0),
        Ok(Duration::Never) => fail(format!(
            "`{name}` cannot be `\"none\"`, expected a duration such as `\"5s\"`"
        )),
        Ok(Duration::Millis(0)) if none_allowed => fail(format!(
            "`{name}` must be longer than zero; write `{name} = \"none\"` for values that never expire"
        )),
        // Releasing a failed fill's leases whatever time they have left.
        Ok(Duration::Millis(0)) if name == "unlock_threshold" => Ok(0),
        Ok(Duration::Millis(0)) => fail(format!("`{name}` must be longer than zero")),
        Ok(Duration::Millis(ms)) if name == "timeout" && ms > MAX_TIMEOUT_MS => fail(String::from(
            "`timeout` must be at most 365 days (`ruecache::Options::MAX_TIMEOUT`), e.g. `\"30s\"`"
        )),
        Ok(Duration::Millis(ms)) if ms > MAX_TTL_MS => fail(format!(
            "`{name}` must be at most 100 years (`ruecache::Options::MAX_TTL`){}",
            if none_allowed {
                "; write `\"none\"` for values that never expire"
            } else {
                ""
            }
        )),
        Ok(Duration::Millis(ms)) => Ok(ms),
    }
}

/// `ruecache::Options::MAX_TTL` in milliseconds (the runtime's builder checks the same bound).
const MAX_TTL_MS: u64 = 100 * 365 * 24 * 60 * 60 * 1000;
/// `ruecache::Options::MAX_TIMEOUT` in milliseconds.
const MAX_TIMEOUT_MS: u64 = 365 * 24 * 60 * 60 * 1000;

/// A float literal argument; `expected` says what `name` takes when it is not a float.
fn float(lit: &Lit, name: &str, expected: &str) -> syn::Result<f64> {
    match lit {
        Lit::Float(float) => float.base10_parse::<f64>(),
        Lit::Int(int) => Err(syn::Error::new(
            int.span(),
            format!(
                "`{name}` expects a float literal, write `{}.0`",
                int.base10_digits()
            ),
        )),
        _ => Err(syn::Error::new(
            lit.span(),
            format!("`{name}` expects {expected}"),
        )),
    }
}

/// The β of `refresh_beta`: a float literal above 0.0, at most 100.0.
fn beta(lit: &Lit) -> syn::Result<f64> {
    let value = float(lit, "refresh_beta", "a float above `0.0`, such as `1.0`")?;
    if !(value > 0.0 && value <= 100.0) {
        return Err(syn::Error::new(
            lit.span(),
            "`refresh_beta` must be above `0.0` and at most `100.0`: `1.0` is the optimum, above \
             refreshes earlier, below later",
        ));
    }
    Ok(value)
}

/// The near cache's most entries: a whole number of at least 1, written as a string
/// (`near = "10000"`) or a number (`near = 10000`), `_` between digits allowed.
fn near_entries(lit: &Lit) -> syn::Result<u64> {
    let fail = |message: String| Err(syn::Error::new(lit.span(), message));
    let digits = match lit {
        Lit::Str(text) => text.value(),
        Lit::Int(int) if int.suffix().is_empty() || int.suffix() == "usize" => {
            int.base10_digits().to_owned()
        }
        _ => return fail(format!("`near` takes {NEAR}")),
    };
    let whole = digits.starts_with(|c: char| c.is_ascii_digit())
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !whole {
        return fail(format!("`near` takes {NEAR}"));
    }
    match digits.replace('_', "").parse::<u64>() {
        Ok(0) => fail(String::from(
            "`near` must be at least 1, the most ids kept in process memory, such as \
             `near = \"10000\"`; leave `near` out for no near cache",
        )),
        Ok(entries) => Ok(entries),
        Err(_) => fail(format!("`near` is too large: it takes {NEAR}")),
    }
}

/// The `jitter` fraction.
fn fraction(lit: &Lit) -> syn::Result<f64> {
    let expected = "a fraction between `0.0` and `1.0`, such as `0.2`";
    let value = float(lit, "jitter", expected)?;
    if !(0.0..=1.0).contains(&value) {
        return Err(syn::Error::new(
            lit.span(),
            "`jitter` must be between `0.0` (off) and `1.0`, such as `0.2` for ±20 %",
        ));
    }
    Ok(value)
}

/// Checks the method's signature: `async fn name(&self, ids: Ids) -> Ret`, no type parameters.
/// The parts come back whenever the ids parameter and the return type are there and the method
/// has no type parameters (`impl Trait` ids included), mistakes elsewhere or not, so that the
/// companion can still be written.
pub(crate) fn method<'a>(sig: &'a Signature, errors: &mut Errors) -> Option<Method<'a>> {
    let mut fail = |error: syn::Error| errors.push(error);

    if sig.asyncness.is_none() {
        fail(syn::Error::new(
            sig.fn_token.span,
            "`#[cached_batch]` methods must be `async`, write `async fn`",
        ));
    }
    let mut generic = false;
    for param in &sig.generics.params {
        if !matches!(param, GenericParam::Lifetime(_)) {
            generic = true;
            fail(syn::Error::new_spanned(
                param,
                "`#[cached_batch]` methods cannot have type or const parameters, the cache key would not tell them apart",
            ));
        }
    }

    let parens = sig.paren_token.span.join();
    let self_token = match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) => {
            if let Err(error) = check_receiver(receiver) {
                fail(error);
            }
            receiver.self_token
        }
        _ => {
            fail(syn::Error::new(
                parens,
                "`#[cached_batch]` methods take `&self` first, the service whose `ruecache::HasConnection` impl gives the Redis connection",
            ));
            syn::token::SelfValue::default()
        }
    };
    let mut typed = sig.inputs.iter().filter_map(|arg| match arg {
        FnArg::Typed(typed) => Some(typed),
        FnArg::Receiver(_) => None,
    });
    let ids = typed.next();
    if ids.is_none() {
        fail(syn::Error::new(
            parens,
            "missing the ids parameter, such as `ids: Vec<Id>` for a batch or `id: Id` for a single item",
        ));
    }
    for extra in typed {
        fail(syn::Error::new_spanned(
            extra,
            "unexpected parameter, `#[cached_batch]` methods take only `&self` and the ids: the cache key is made from the ids alone; to key by more, make it part of the id type (a struct id whose `Display` writes every part)",
        ));
    }
    if let Some(impl_trait) = ids.and_then(|ids| find_impl_trait(&ids.ty)) {
        generic = true;
        fail(syn::Error::new_spanned(
            impl_trait,
            "`impl Trait` ids are not supported, write `Vec<Id>` for a batch or `Id` for a single item",
        ));
    }
    let ret_ty = match &sig.output {
        ReturnType::Type(_, ty) => Some(&**ty),
        ReturnType::Default => {
            fail(syn::Error::new(
                sig.ident.span(),
                "missing return type, expected `Result<HashMap<Id, T>, E>` (batch) or `Result<Option<T>, E>` (single item)",
            ));
            None
        }
    };

    if generic {
        return None;
    }
    let ids = ids?;
    let ret_ty = ret_ty?;
    Some(Method {
        self_token,
        ids_pat: &ids.pat,
        ids_ty: &ids.ty,
        ret_ty,
        error_ty: written_error_type(ret_ty),
        value_ty: written_value_type(ret_ty),
    })
}

/// `&self`, `&'a self`, or the same written out: `self: &Self`, `self: &'a Self`.
fn check_receiver(receiver: &Receiver) -> syn::Result<()> {
    let shared = receiver.mutability.is_none()
        && match (&receiver.reference, &receiver.colon_token) {
            (Some(_), None) => true,
            (None, Some(_)) => is_shared_self(&receiver.ty),
            _ => false,
        };
    if !shared {
        return Err(syn::Error::new_spanned(
            receiver,
            "`#[cached_batch]` methods take `&self` (or `self: &Self`), not `self` by value, `&mut self` or `self: Type`",
        ));
    }
    Ok(())
}

/// `&Self` or `&'a Self`: the keyword `Self`, not a type's name.
fn is_shared_self(ty: &Type) -> bool {
    let Type::Reference(reference) = ty else {
        return false;
    };
    reference.mutability.is_none()
        && matches!(&*reference.elem, Type::Path(path) if path.qself.is_none() && path.path.is_ident("Self"))
}

/// The first `impl Trait` in `ty`, at any depth (`impl Display`, `Vec<impl Display>`): each one is
/// a type parameter of the method, which the cache key would not tell apart.
fn find_impl_trait(ty: &Type) -> Option<&TypeImplTrait> {
    struct Find<'a>(Option<&'a TypeImplTrait>);
    impl<'a> Visit<'a> for Find<'a> {
        fn visit_type_impl_trait(&mut self, found: &'a TypeImplTrait) {
            self.0.get_or_insert(found);
        }
    }
    let mut find = Find(None);
    find.visit_type(ty);
    find.0
}

/// `E` in a return type written `Something<T, E>`.
fn written_error_type(ret_ty: &Type) -> Option<&Type> {
    match type_arguments(ret_ty)[..] {
        [_, error] => Some(error),
        _ => None,
    }
}

/// `T` in a return type written `Something<Map<Id, T>, E>` or `Something<Option<T>, E>` (with
/// or without `E`), going down as far as the type is written out: the map, or the whole return
/// type, when an alias hides what is inside. For `Something<Vec<(Id, T)>, E>` it is the pair: a
/// single-item `Something<Option<(A, B)>, E>` is written the same way, and there the pair is the
/// value. Read for spans only.
fn written_value_type(ret_ty: &Type) -> &Type {
    let ok = match type_arguments(ret_ty)[..] {
        [ok] | [ok, _] => ok,
        _ => return ret_ty,
    };
    match type_arguments(ok)[..] {
        [_, value, ..] | [value] => value,
        _ => ok,
    }
}

/// The type arguments of the last segment of a path type: `[A, B]` for `x::Y<A, B>`.
fn type_arguments(ty: &Type) -> Vec<&Type> {
    let Type::Path(path) = ty else {
        return Vec::new();
    };
    match path.path.segments.last().map(|segment| &segment.arguments) {
        Some(PathArguments::AngleBracketed(args)) => args
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The span of the first token: on stable Rust a span cannot cover several tokens.
pub(crate) fn first_span(tokens: &dyn ToTokens) -> Span {
    tokens
        .to_token_stream()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |token| token.span())
}

/// The span of the last token.
pub(crate) fn last_span(tokens: &dyn ToTokens) -> Span {
    tokens
        .to_token_stream()
        .into_iter()
        .last()
        .map_or_else(Span::call_site, |token| token.span())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str, name: &str, none_allowed: bool) -> Result<u64, String> {
        let lit = LitStr::new(text, Span::call_site());
        duration_ms(&lit, name, none_allowed).map_err(|error| error.to_string())
    }

    #[test]
    fn the_limits_are_the_runtimes() {
        assert_eq!(
            u128::from(MAX_TTL_MS),
            ruecache::Options::MAX_TTL.as_millis()
        );
        assert_eq!(
            u128::from(MAX_TIMEOUT_MS),
            ruecache::Options::MAX_TIMEOUT.as_millis()
        );
    }

    #[test]
    fn durations_are_accepted_up_to_the_limits() {
        for (name, none_allowed) in [("ttl", true), ("lock_ttl", false)] {
            assert_eq!(ms("1ms", name, none_allowed), Ok(1));
            assert_eq!(ms("36500d", name, none_allowed), Ok(MAX_TTL_MS));
            let over = ms("36500d1ms", name, none_allowed).unwrap_err();
            assert!(
                over.starts_with(&format!("`{name}` must be at most 100 years")),
                "{over}"
            );
            let zero = ms("0ms", name, none_allowed).unwrap_err();
            assert!(
                zero.starts_with(&format!("`{name}` must be longer than zero")),
                "{zero}"
            );
        }
        assert_eq!(ms("1ms", "timeout", false), Ok(1));
        assert_eq!(ms("365d", "timeout", false), Ok(MAX_TIMEOUT_MS));
        let over = ms("365d1ms", "timeout", false).unwrap_err();
        assert!(
            over.starts_with("`timeout` must be at most 365 days"),
            "{over}"
        );
    }

    #[test]
    fn the_receiver_is_a_shared_self_however_written() {
        let check = |text: &str| {
            let sig: Signature = syn::parse_str(&format!("fn f({text})")).unwrap();
            let Some(FnArg::Receiver(receiver)) = sig.inputs.first() else {
                panic!("{text}: not a receiver");
            };
            check_receiver(receiver).is_ok()
        };
        for ok in ["&self", "&'a self", "self: &Self", "self: &'a Self"] {
            assert!(check(ok), "{ok}");
        }
        for wrong in [
            "self",
            "mut self",
            "&mut self",
            "self: &mut Self",
            "mut self: &Self",
            "self: Box<Self>",
            "self: &Box<Self>",
            "self: Self",
        ] {
            assert!(!check(wrong), "{wrong}");
        }
    }

    #[test]
    fn impl_trait_is_found_at_any_depth() {
        let found = |text: &str| {
            let ty: Type = syn::parse_str(text).unwrap();
            find_impl_trait(&ty).map(|found| found.to_token_stream().to_string())
        };
        assert_eq!(found("impl Display").as_deref(), Some("impl Display"));
        assert_eq!(found("Vec<impl Display>").as_deref(), Some("impl Display"));
        assert_eq!(
            found("(u64, Box<[impl Into<u64>]>)").as_deref(),
            Some("impl Into < u64 >")
        );
        assert_eq!(found("Vec<Box<dyn Display>>"), None);
    }

    #[test]
    fn the_value_type_is_found_as_far_as_it_is_written() {
        let value = |text: &str| {
            let ty: Type = syn::parse_str(text).unwrap();
            written_value_type(&ty).to_token_stream().to_string()
        };
        assert_eq!(value("Result<HashMap<u64, Widget>, E>"), "Widget");
        assert_eq!(value("Result<HashMap<u64, Widget, S>, E>"), "Widget");
        assert_eq!(value("Result<BTreeMap<u64, Vec<u8> >, E>"), "Vec < u8 >");
        assert_eq!(value("Result<Vec<(u64, Widget)>, E>"), "(u64 , Widget)");
        assert_eq!(value("Result<Option<(u64, Widget)>, E>"), "(u64 , Widget)");
        assert_eq!(value("Result<Option<Widget>, E>"), "Widget");
        assert_eq!(value("AppResult<Option<Widget>>"), "Widget");
        assert_eq!(value("AppResult<WidgetMap>"), "WidgetMap");
        assert_eq!(value("Outcome"), "Outcome");
    }

    #[test]
    fn none_is_only_for_the_ttl() {
        assert_eq!(ms("none", "ttl", true), Ok(0));
        for name in ["lock_ttl", "timeout"] {
            let error = ms("none", name, false).unwrap_err();
            assert!(
                error.starts_with(&format!("`{name}` cannot be `\"none\"`")),
                "{error}"
            );
        }
    }

    #[test]
    fn near_takes_a_whole_number_of_at_least_one() {
        let near = |text: &str| near_entries(&syn::parse_str::<Lit>(text).unwrap());
        for (text, entries) in [
            ("\"10000\"", 10_000),
            ("\"10_000\"", 10_000),
            ("\"1\"", 1),
            ("10000", 10_000),
            ("10_000usize", 10_000),
        ] {
            assert_eq!(near(text).unwrap(), entries, "{text}");
        }
        for (text, reason) in [
            ("\"0\"", "`near` must be at least 1"),
            ("0", "`near` must be at least 1"),
            (
                "\"many\"",
                "`near` takes the most ids kept in process memory",
            ),
            ("\"\"", "`near` takes the most ids"),
            ("\" 10\"", "`near` takes the most ids"),
            ("\"-1\"", "`near` takes the most ids"),
            ("\"1.5\"", "`near` takes the most ids"),
            ("1.5", "`near` takes the most ids"),
            ("10u8", "`near` takes the most ids"),
            ("true", "`near` takes the most ids"),
            ("\"99999999999999999999\"", "`near` is too large"),
        ] {
            let error = near(text).unwrap_err().to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn near_max_age_needs_near() {
        let errors = |tokens: proc_macro2::TokenStream| -> Vec<String> {
            let mut errors = Errors::default();
            let args = Args::parse(tokens, &mut errors);
            let near = settings(&args, &mut errors).near;
            match errors.finish() {
                Ok(()) => vec![format!("{near:?}")],
                Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
            }
        };
        assert_eq!(
            errors(quote::quote!(
                key = "w:{id}",
                near = "5",
                near_max_age = "2s"
            )),
            ["Some((5, Some(2000)))"]
        );
        assert_eq!(
            errors(quote::quote!(key = "w:{id}", near_max_age = "2s")),
            ["`near_max_age` tunes the near cache: add `near = \"<max entries>\"`, such as `near = \"10000\"`"]
        );
        // A bad `near` is reported once, at its value, not also as missing.
        let bad = errors(quote::quote!(
            key = "w:{id}",
            near = "0",
            near_max_age = "0s"
        ));
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(
            bad[0].starts_with("`near_max_age` must be longer than zero"),
            "{bad:?}"
        );
        assert!(bad[1].starts_with("`near` must be at least 1"), "{bad:?}");
    }

    #[test]
    fn jitter_is_accepted_from_zero_to_one() {
        let jitter = |text: &str| fraction(&syn::parse_str::<Lit>(text).unwrap());
        for (text, value) in [("0.0", 0.0), ("0.2", 0.2), ("1.0", 1.0), ("1e-1", 0.1)] {
            assert_eq!(jitter(text).unwrap(), value, "{text}");
        }
        for (text, reason) in [
            ("1.01", "must be between `0.0` (off) and `1.0`"),
            ("0", "expects a float literal, write `0.0`"),
            ("\"0.2\"", "expects a fraction between `0.0` and `1.0`"),
        ] {
            let error = jitter(text).unwrap_err().to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }
}
