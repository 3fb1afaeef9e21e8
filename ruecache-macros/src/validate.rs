//! Checks the arguments' values and the method's shape; the types themselves are checked by the
//! compiler, through the trait bounds of `ruecache::__private`.

use proc_macro2::Span;
use syn::{
    FnArg, GenericArgument, GenericParam, ImplItemFn, Lit, LitStr, Pat, Path, PathArguments,
    Receiver, ReturnType, Type,
};

use crate::args::Args;
use crate::duration::{self, Duration};
use crate::errors::Errors;
use crate::template;

/// The validated arguments.
pub(crate) struct Settings<'a> {
    /// The path of the runtime crate given with `crate = "..."`; `None` for `::ruecache`.
    pub(crate) krate: Option<Path>,
    /// The key template's literal pieces around the id slots.
    pub(crate) key_parts: Vec<String>,
    /// The `key` literal, for spans.
    pub(crate) key: &'a LitStr,
    /// Data TTL in milliseconds, `Some(0)` for no expiry, `None` for the default.
    pub(crate) ttl_ms: Option<u64>,
    pub(crate) jitter: Option<f64>,
    pub(crate) lock_ttl_ms: Option<u64>,
    pub(crate) timeout_ms: Option<u64>,
    /// The codec type, `None` for the default (`MsgPack`).
    pub(crate) codec: Option<&'a Path>,
}

/// The parts of the method the expansion needs.
pub(crate) struct Method<'a> {
    /// The `self` of `&self`: generated code says `self` with this token's span so that it is the
    /// method's own `self`.
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
}

/// Checks every argument's value. Each mistake is pushed to `errors`; the result is only
/// meaningful if there are none.
pub(crate) fn settings<'a>(args: &'a Args, errors: &mut Errors) -> Option<Settings<'a>> {
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
    let jitter = args
        .jitter
        .as_ref()
        .and_then(|lit| errors.check(fraction(lit)));
    let krate = match &args.krate {
        Some(lit) => Some(errors.check(lit.parse::<Path>().map_err(|_| {
            syn::Error::new(
                lit.span(),
                "`crate` expects the path of `ruecache`, such as `crate = \"my_crate::ruecache\"`",
            )
        }))?),
        None => None,
    };
    Some(Settings {
        krate,
        key_parts: key_parts?,
        key: key?,
        ttl_ms,
        jitter,
        lock_ttl_ms,
        timeout_ms,
        codec: args.codec.as_ref(),
    })
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
        Ok(Duration::Millis(0)) => fail(format!("`{name}` must be longer than zero")),
        Ok(Duration::Millis(ms)) => Ok(ms),
    }
}

/// The `jitter` fraction.
fn fraction(lit: &Lit) -> syn::Result<f64> {
    let value = match lit {
        Lit::Float(float) => float.base10_parse::<f64>()?,
        Lit::Int(int) => {
            return Err(syn::Error::new(
                int.span(),
                format!(
                    "`jitter` expects a float literal, write `{}.0`",
                    int.base10_digits()
                ),
            ))
        }
        _ => {
            return Err(syn::Error::new(
                lit.span(),
                "`jitter` expects a fraction between `0.0` and `1.0`, such as `0.2`",
            ))
        }
    };
    if !(0.0..=1.0).contains(&value) {
        return Err(syn::Error::new(
            lit.span(),
            "`jitter` must be between `0.0` (off) and `1.0`, such as `0.2` for ±20 %",
        ));
    }
    Ok(value)
}

/// Checks the method's signature: `async fn name(&self, ids: Ids) -> Ret`, no type parameters.
pub(crate) fn method<'a>(func: &'a ImplItemFn, errors: &mut Errors) -> Option<Method<'a>> {
    let sig = &func.sig;
    let mut fail = |error: syn::Error| errors.push(error);

    if sig.asyncness.is_none() {
        fail(syn::Error::new(
            sig.fn_token.span,
            "`#[cached_batch]` methods must be `async`, write `async fn`",
        ));
    }
    for param in &sig.generics.params {
        if !matches!(param, GenericParam::Lifetime(_)) {
            fail(syn::Error::new_spanned(
                param,
                "`#[cached_batch]` methods cannot have type or const parameters, the cache key would not tell them apart",
            ));
        }
    }

    let parens = sig.paren_token.span.join();
    let self_token = match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) => check_receiver(receiver).map_err(&mut fail).ok(),
        _ => {
            fail(syn::Error::new(
                parens,
                "`#[cached_batch]` methods take `&self` first, the service whose `ruecache::HasConnection` impl gives the Redis connection",
            ));
            None
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
            "unexpected parameter, `#[cached_batch]` methods take only `&self` and the ids: the cache key is made from the ids alone",
        ));
    }
    if let Some(ids) = ids {
        if let Type::ImplTrait(_) = &*ids.ty {
            fail(syn::Error::new_spanned(
                &ids.ty,
                "`impl Trait` ids are not supported, write `Vec<Id>` for a batch or `Id` for a single item",
            ));
        }
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

    let ids = ids?;
    let ret_ty = ret_ty?;
    Some(Method {
        self_token: self_token?,
        ids_pat: &ids.pat,
        ids_ty: &ids.ty,
        ret_ty,
        error_ty: written_error_type(ret_ty),
    })
}

fn check_receiver(receiver: &Receiver) -> syn::Result<syn::token::SelfValue> {
    if receiver.reference.is_none()
        || receiver.mutability.is_some()
        || receiver.colon_token.is_some()
    {
        return Err(syn::Error::new_spanned(
            receiver,
            "`#[cached_batch]` methods take `&self`, not `self` by value, `&mut self` or `self: Type`",
        ));
    }
    Ok(receiver.self_token)
}

/// `E` in a return type written `Something<T, E>`.
fn written_error_type(ret_ty: &Type) -> Option<&Type> {
    if let Type::Path(path) = ret_ty {
        if let Some(PathArguments::AngleBracketed(args)) =
            path.path.segments.last().map(|s| &s.arguments)
        {
            let types: Vec<_> = args
                .args
                .iter()
                .filter_map(|arg| match arg {
                    GenericArgument::Type(ty) => Some(ty),
                    _ => None,
                })
                .collect();
            if let [_, error] = types[..] {
                return Some(error);
            }
        }
    }
    None
}
