//! Writes the cached method and its `_cache` companion.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Ident, ImplItemFn, Pat, PatIdent};

use crate::args::Args;
use crate::errors::Errors;
use crate::validate::{self, Method, Settings};

/// Expands `#[cached_batch(args)] item`. On any mistake the item comes back unchanged next to
/// the errors, so that its callers still type-check and the IDE keeps working.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ImplItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "`#[cached_batch]` applies to `async fn` methods in an `impl` block",
            );
            return with_error(item, error);
        }
    };
    match try_expand(args, &func) {
        Ok(tokens) => tokens,
        Err(error) => with_error(func.into_token_stream(), error),
    }
}

fn with_error(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.into_compile_error();
    quote!(#item #error)
}

/// Parse, validate, expand.
fn try_expand(args: TokenStream, func: &ImplItemFn) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let args = Args::parse(args, &mut errors);
    let settings = validate::settings(&args, &mut errors);
    let method = validate::method(func, &mut errors);
    errors.finish()?;
    let settings = settings.expect("settings without errors are complete");
    let method = method.expect("a method without errors is complete");

    let companion_name = format_ident!("{}_cache", func.sig.ident);
    let cached = cached_method(func, &settings, &method, &companion_name);
    let companion = companion(func, &settings, &method, &companion_name);
    Ok(quote!(#cached #companion))
}

/// The user's method, its body turned into the fetch of a `get_and_fill`:
///
/// ```text
/// async fn get_widgets(&self, __ruecache_ids: Vec<WidgetId>) -> Result<HashMap<..>, AppError> {
///     ::ruecache::__private::fill::<Vec<WidgetId>, Result<HashMap<..>, AppError>, _, _, _>(
///         Self::get_widgets_cache(self),
///         __ruecache_ids,
///         move |ids: Vec<WidgetId>| async move {
///             if false { return ::ruecache::__private::unreachable::<Result<..>>(); }
///             self.db.load_widgets(&ids).await
///         },
///         ::ruecache::__private::error_from::<<Result<..> as ::ruecache::__private::ReturnType>::Error>,
///     )
///     .await
/// }
/// ```
fn cached_method(
    func: &ImplItemFn,
    settings: &Settings<'_>,
    method: &Method<'_>,
    companion: &Ident,
) -> TokenStream {
    let private = private(settings);
    let Method {
        self_token,
        ids_pat,
        ids_ty,
        ret_ty,
        error_span,
    } = method;
    let ids = Ident::new("__ruecache_ids", Span::mixed_site());

    let mut sig = func.sig.clone();
    for input in &mut sig.inputs {
        if let syn::FnArg::Typed(typed) = input {
            let pat = Pat::Ident(PatIdent {
                attrs: Vec::new(),
                by_ref: None,
                mutability: None,
                ident: ids.clone(),
                subpat: None,
            });
            *typed.pat = pat;
        }
    }

    let ret_span = ret_ty.span();
    let fill = quote_spanned!(ret_span=> #private::fill::<#ids_ty, #ret_ty, _, _, _>);
    let error_from = quote_spanned!(*error_span=>
        #private::error_from::<<#ret_ty as #private::ReturnType>::Error>
    );
    // Fixes the async block's output to the declared return type before the body is checked,
    // so `?` and `Ok(..)` in the body infer as they would in the method itself.
    let fake_return = quote_spanned!(ret_span=>
        if false {
            return #private::unreachable::<#ret_ty>();
        }
    );
    let stmts = &func.block.stmts;
    let attrs = &func.attrs;
    let vis = &func.vis;
    let defaultness = &func.defaultness;
    quote! {
        #(#attrs)*
        #vis #defaultness #sig {
            #fill(
                Self::#companion(#self_token),
                #ids,
                move |#ids_pat: #ids_ty| async move {
                    #fake_return
                    #(#stmts)*
                },
                #error_from,
            )
            .await
        }
    }
}

/// `fn <method>_cache(&self) -> ruecache::Cache<Id, T, Codec>`: the method's cache, whose spec
/// (template, options, counters) lives in a `static` inside it.
fn companion(
    func: &ImplItemFn,
    settings: &Settings<'_>,
    method: &Method<'_>,
    name: &Ident,
) -> TokenStream {
    let krate = &settings.krate;
    let private = private(settings);
    let Method {
        self_token,
        ids_ty,
        ret_ty,
        ..
    } = method;
    let spec = Ident::new("__RUECACHE_SPEC", Span::mixed_site());

    let form = quote_spanned!(ret_ty.span()=>
        <<#ret_ty as #private::ReturnType>::Ok as #private::Form<#ids_ty>>
    );
    let codec = match settings.codec {
        Some(path) => path.to_token_stream(),
        None => quote_spanned!(ret_ty.span()=> #krate::MsgPack),
    };
    let key_span = settings.key.span();
    let parts = settings.key_parts.iter().map(|part| {
        let mut lit = Literal::string(part);
        lit.set_span(key_span);
        lit
    });
    let option_u64 = |value: Option<u64>| match value {
        Some(ms) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };
    let ttl = option_u64(settings.ttl_ms);
    let lock_ttl = option_u64(settings.lock_ttl_ms);
    let timeout = option_u64(settings.timeout_ms);
    let jitter = match settings.jitter {
        Some(fraction) => {
            let lit = Literal::f64_suffixed(fraction);
            quote!(::core::option::Option::Some(#lit))
        }
        None => quote!(::core::option::Option::None),
    };
    let connection = quote_spanned!(self_token.span=>
        <Self as #krate::HasConnection>::cache_connection(#self_token)
    );

    let method_name = &func.sig.ident;
    let doc = format!(
        " The cache behind [`{method_name}`](Self::{method_name}), made by `#[cached_batch]`.\n\n \
         Call `.invalidate(ids).await` on it after changing the source, so that readers stop \
         getting the old values; `.stats()` gives its counters."
    );
    let cfgs = func.attrs.iter().filter(|attr| attr.path().is_ident("cfg"));
    let vis = &func.vis;
    let generics = &func.sig.generics;
    let where_clause = &generics.where_clause;
    quote! {
        #(#cfgs)*
        #[doc = #doc]
        #vis fn #name #generics(&#self_token) -> #krate::Cache<#form::Id, #form::Value, #codec>
        #where_clause
        {
            static #spec: #private::Spec = #private::Spec::new(
                #private::KeyTemplate::from_parts(&[#(#parts),*]),
                #private::options(#ttl, #jitter, #lock_ttl, #timeout),
            );
            #private::cache(
                #connection,
                &#spec,
                <#codec as ::core::default::Default>::default(),
            )
        }
    }
}

/// `::ruecache::__private`, or the `crate = "..."` override's.
fn private(settings: &Settings<'_>) -> TokenStream {
    let krate = &settings.krate;
    quote!(#krate::__private)
}
