//! Writes the cached method and its `_cache` companion.

use proc_macro2::{Delimiter, Group, Literal, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::{Ident, Pat, PatIdent};

use crate::args::Args;
use crate::errors::Errors;
use crate::item::{self, Item, MethodItem};
use crate::validate::{self, first_span, last_span, Method, Settings};

/// Expands `#[cached_batch(args)] item`: parse, validate, expand. On any mistake the item comes
/// back unchanged next to the errors, with its companion whenever the method's types are known,
/// so that callers of both still type-check and the IDE keeps working.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match item::parse(item.clone()) {
        Item::Method(func) => func,
        // The compiler reports the signature's syntax error; another one here would be noise.
        Item::BrokenSignature => return item,
        Item::Other => {
            let error = syn::Error::new(
                Span::call_site(),
                "`#[cached_batch]` applies to `async fn` methods in an inherent `impl` block",
            )
            .into_compile_error();
            return quote!(#item #error);
        }
    };
    let mut errors = Errors::default();
    let args = Args::parse(args, &mut errors);
    let settings = validate::settings(&args, &mut errors);
    let method = validate::method(&func.sig, &mut errors);

    let companion_name = format_ident!("{}_cache", func.sig.ident);
    let companion = method
        .as_ref()
        .map(|method| companion(&func, &settings, method, &companion_name));
    if let Err(error) = errors.finish() {
        let error = error.into_compile_error();
        return quote!(#item #companion #error);
    }
    let method = method.expect("a method without errors is complete");
    let cached = cached_method(&func, &settings, &method, &companion_name);
    quote!(#cached #companion)
}

/// The user's method, its body turned into the fetch of the cache's fill:
///
/// ```text
/// async fn get_widgets(&self, ids: Vec<WidgetId>) -> Result<HashMap<WidgetId, Widget>, AppError> {
///     #![inner_attributes_of_the_body]
///     ::ruecache::__private::Fill::<Result<..>, Vec<WidgetId>, <Result<..> as Form<..>>::Id, ..Value, ..Error, ..Shape, _>::fill(
///         Self::get_widgets_cache(self),
///         ids,
///         move |ids: Vec<WidgetId>| async move {
///             if false { return ::ruecache::__private::unreachable::<Result<..>>(); }
///             { self.db.load_widgets(&ids).await } // the body, as written
///         },
///         ::ruecache::__private::error_from,                  // at `AppError`
///         <::ruecache::__private::At>::shape(),               // at `Vec<WidgetId>`
///         <::ruecache::__private::At>::value(                 // at `Widget`
///             <::ruecache::__private::At>::id(),              // at `Vec<WidgetId>`
///         ),
///     )
///     .await
/// }
/// ```
///
/// The body is moved in as the tokens it was written with, inside its own braces.
///
/// With `refresh_ahead = true` the body is a hidden method of its own instead,
/// `__ruecache_fetch_get_widgets`, with the method's signature: the fetch calls it, and the
/// cache is given a refresh fetch that calls it on an owned clone of the service:
///
/// ```text
/// <Result<..> as ::ruecache::__private::Refresh<Vec<WidgetId>>>::refreshing(
///     Self::get_widgets_cache(self),
///     {
///         let this = <_ as Owned<_>>::owned(self, <At>::service::<Self, _>()); // at the argument
///         move |ids| { let this = this(); async move { Self::__ruecache_fetch_get_widgets(&this, ids).await } }
///     },
/// )
/// ```
fn cached_method(
    func: &MethodItem,
    settings: &Settings<'_>,
    method: &Method<'_>,
    companion: &Ident,
) -> TokenStream {
    let Method {
        self_token,
        ids_pat,
        ids_ty,
        ret_ty,
        error_ty,
        value_ty,
    } = method;
    let form = Form::new(settings, ret_ty, ids_ty);
    let at = form.span;
    let ids = outer_ids_name(ids_pat, at);

    let mut sig = func.sig.clone();
    for input in &mut sig.inputs {
        if let syn::FnArg::Typed(typed) = input {
            *typed.pat = Pat::Ident(PatIdent {
                attrs: Vec::new(),
                by_ref: None,
                mutability: None,
                ident: ids.clone(),
                subpat: None,
            });
        }
    }

    let private = private(settings, at);
    // Fixes the async block's output to the declared type before the body is checked, so that
    // `?` and `Ok(..)` in the body infer as they would in the method itself.
    let ret = &form.ret;
    let mut body = Group::new(Delimiter::Brace, func.body.rest.clone());
    // The braces are the user's, at their place, but marked as the macro's: they are not the
    // method's own braces any more (they are the tail of the fetch's block), and the compiler
    // would otherwise suggest removing them from a one-line body (`unused_braces`).
    body.set_span(Span::mixed_site().located_at(func.body.span));
    // With refresh-ahead, the body becomes a method of its own (the background refresh calls it
    // on a clone of the service), and the call's fetch calls it too.
    let hidden = Ident::new(
        &format!("__ruecache_fetch_{}", func.sig.ident),
        func.sig.ident.span(),
    );
    let fetch = if settings.refresh.is_some() {
        let ids = Ident::new("__ruecache_ids", Span::mixed_site().located_at(at));
        quote_spanned!(at=> move |#ids: #ids_ty| Self::#hidden(#self_token, #ids))
    } else {
        quote_spanned! {at=>
            move |#ids_pat: #ids_ty| async move {
                if false {
                    return #private::unreachable::<#ret>();
                }
                #body
            }
        }
    };
    // `error_from`, its type `fn(ruecache::Error) -> E` inferred from the form, so that a
    // missing `From` is reported at `E` (or at the alias that hides it).
    let error_from = {
        let at = first_span(error_ty.unwrap_or(ret_ty));
        let private = self::private(settings, at);
        quote_spanned!(at=> #private::error_from)
    };
    // The ids parameter's shape (a list of ids, or one id), made at the ids type, so that a
    // parameter that does not fit the return type is reported under it.
    let shape = call_at_type(settings, ids_ty, "shape", TokenStream::new());
    // What the cache needs of the id, checked at the ids type (as in the companion, so that the
    // compiler shows a failure once), and of the value, checked at the value type.
    let checked = call_at_type(settings, value_ty, "value", id_check(settings, ids_ty));
    let fill = form.fill();
    // Called at the form's span too (the name only keeps its spelling): a call spanning from the
    // method's name to its return type would report the form's errors a second time, there.
    let companion = Ident::new(&companion.to_string(), at);
    let mut cache = quote_spanned!(at=> Self::#companion(#self_token));
    let mut fetch_method = TokenStream::new();
    if let Some((on, _)) = settings.refresh {
        // The service is cloned into the refresh (reported once, at `refresh_ahead`, if it cannot
        // be).
        let this = Ident::new("__ruecache_this", Span::mixed_site().located_at(on));
        let ids = Ident::new("__ruecache_ids", Span::mixed_site().located_at(on));
        let (ret, ids_ty) = (&form.ret, &form.ids);
        let private = self::private(settings, on);
        cache = quote_spanned! {on=>
            <#ret as #private::Refresh<#ids_ty>>::refreshing(#cache, {
                let #this = <_ as #private::Owned<_>>::owned(
                    #self_token,
                    <#private::At>::service::<Self, _>(),
                );
                move |#ids| {
                    let #this = #this();
                    async move { Self::#hidden(&#this, #ids).await }
                }
            })
        };
        let mut sig = func.sig.clone();
        sig.ident = hidden;
        let cfgs = func.attrs.iter().filter(|attr| attr.path().is_ident("cfg"));
        let inner_attrs = &func.body.inner_attrs;
        let mut block = Group::new(Delimiter::Brace, func.body.rest.clone());
        block.set_span(func.body.span);
        fetch_method = quote! {
            #(#cfgs)*
            #[doc(hidden)]
            #sig {
                #(#inner_attrs)*
                #block
            }
        };
    }
    let args = quote_spanned!(at=>
        #cache, #ids, #fetch, #error_from, #shape, #checked
    );
    let inner_attrs = if settings.refresh.is_some() {
        Vec::new()
    } else {
        func.body.inner_attrs.clone()
    };
    let body = quote_spanned!(at=> #(#inner_attrs)* #fill(#args).await);
    let attrs = &func.attrs;
    let vis = &func.vis;
    let defaultness = &func.defaultness;
    let mut block = Group::new(Delimiter::Brace, body);
    block.set_span(func.body.span);
    quote! {
        #(#attrs)*
        #vis #defaultness #sig #block
        #fetch_method
    }
}

/// The name of the ids parameter in the generated signature: the user's own when the pattern is
/// a plain name (`ids`, `mut ids`), so that attributes naming it (`#[tracing::instrument(skip(ids))]`),
/// docs and IDE hints see it; `__ruecache_ids` for a destructuring pattern, which the fetch's
/// parameter then takes apart. Either way the fetch's parameter, written as the user wrote it,
/// is what the body sees (with its `mut`).
fn outer_ids_name(ids_pat: &Pat, at: Span) -> Ident {
    match ids_pat {
        Pat::Ident(PatIdent {
            by_ref: None,
            subpat: None,
            ident,
            ..
        }) => ident.clone(),
        _ => Ident::new("__ruecache_ids", Span::mixed_site().located_at(at)),
    }
}

/// `fn <method>_cache(&self) -> ruecache::Cache<Id, T, Codec>`: the method's cache, whose spec
/// (template, options, counters) lives in a `static` inside it.
fn companion(
    func: &MethodItem,
    settings: &Settings<'_>,
    method: &Method<'_>,
    name: &Ident,
) -> TokenStream {
    let Method {
        self_token,
        ids_ty,
        ret_ty,
        ..
    } = method;
    let form = Form::new(settings, ret_ty, ids_ty);
    let krate = krate(settings, form.span);
    let private = private(settings, Span::call_site());
    let spec = Ident::new("__RUECACHE_SPEC", Span::mixed_site());

    let (id, value) = (form.item("Id"), form.item("Value"));
    let codec = match settings.codec {
        Some(path) => path.to_token_stream(),
        None => {
            let krate = self::krate(settings, form.span);
            quote_spanned!(form.span=> #krate::MsgPack)
        }
    };
    let key_span = settings.key_span;
    let parts = settings.key_parts.iter().map(|part| {
        let mut lit = Literal::string(part);
        lit.set_span(key_span);
        lit
    });
    // The options, set through `Options`'s setters (those of `CacheBuilder`) and checked by
    // its rules when the `static` below is evaluated, while the program compiles.
    let millis = |ms: u64| quote!(::core::time::Duration::from_millis(#ms));
    let mut setters = Vec::new();
    if let Some(ms) = settings.ttl_ms {
        let ttl = match ms {
            0 => quote!(::core::option::Option::None),
            ms => {
                let ttl = millis(ms);
                quote!(::core::option::Option::Some(#ttl))
            }
        };
        setters.push(quote!(.set_ttl(#ttl)));
    }
    if let Some(ms) = settings.absent_ttl_ms {
        let ttl = millis(ms);
        setters.push(quote!(.set_absent_ttl(#ttl)));
    }
    if let Some(fraction) = settings.jitter {
        let lit = Literal::f64_suffixed(fraction);
        setters.push(quote!(.set_jitter(#lit)));
    }
    if let Some(ms) = settings.lock_ttl_ms {
        let ttl = millis(ms);
        setters.push(quote!(.set_lock_ttl(#ttl)));
    }
    if let Some(ms) = settings.timeout_ms {
        let timeout = millis(ms);
        setters.push(quote!(.set_timeout(#timeout)));
    }
    if settings.backoff_min_ms.is_some() || settings.backoff_max_ms.is_some() {
        let default = quote!(#private::Options::DEFAULT);
        let min = settings
            .backoff_min_ms
            .map_or_else(|| quote!(#default.backoff_min()), millis);
        let max = settings
            .backoff_max_ms
            .map_or_else(|| quote!(#default.backoff_max()), millis);
        setters.push(quote!(.set_backoff(#min, #max)));
    }
    if let Some(ms) = settings.unlock_threshold_ms {
        let threshold = millis(ms);
        setters.push(quote!(.set_unlock_threshold(#threshold)));
    }
    if let Some(on) = settings.fallback_to_source {
        setters.push(quote!(.set_fallback_to_source(#on)));
    }
    if let Some(ms) = settings.stale_for_ms {
        let stale_for = millis(ms);
        setters.push(quote!(.set_stale_for(#stale_for)));
    }
    if let Some(ms) = settings.stale_retry_ms {
        let retry = millis(ms);
        setters.push(quote!(.set_stale_retry(#retry)));
    }
    if let Some(ms) = settings.fetch_timeout_ms {
        let timeout = millis(ms);
        setters.push(quote!(.set_fetch_timeout(#timeout)));
    }
    if let Some(ms) = settings.fetch_soft_timeout_ms {
        let timeout = millis(ms);
        setters.push(quote!(.set_fetch_soft_timeout(#timeout)));
    }
    if let Some((_, beta)) = settings.refresh {
        let lit = Literal::f64_suffixed(beta);
        setters.push(quote!(.set_refresh_beta(#lit)));
    }
    if let Some((entries, max_age_ms)) = settings.near {
        let entries = Literal::u64_unsuffixed(entries);
        let max_age = max_age_ms.map(|ms| {
            let max_age = millis(ms);
            quote!(.max_age(#max_age))
        });
        setters.push(quote!(.set_near(#private::NearCache::new(#entries) #max_age)));
    }
    // Named after the method unless the attribute names it.
    let cache_name = settings
        .name
        .clone()
        .unwrap_or_else(|| func.sig.ident.to_string());
    setters.push(quote!(.set_name(#cache_name)));
    let self_krate = self::krate(settings, self_token.span);
    let connection = quote_spanned!(self_token.span=>
        <Self as #self_krate::HasConnection>::cache_connection(#self_token)
    );
    // The id's requirements are reported under the ids type: the id is that type or its items,
    // which only the compiler can tell apart (aliases).
    let checked_id = id_check(settings, ids_ty);
    let args = quote!(
        #connection, &#spec, <#codec as ::core::default::Default>::default(), #checked_id
    );
    let cache = call_at_type(settings, ids_ty, "cache", args);

    let cache_ty = quote_spanned!(form.span=> #krate::Cache<#id, #value, #codec>);

    let method_name = &func.sig.ident;
    let doc = format!(
        " The cache behind [`{method_name}`](Self::{method_name}), made by `#[cached_batch]`.\n\n \
         Call `.invalidate(ids).await` on it after changing the source, so that readers stop \
         getting the old values; `.stats()` gives its counters.\n\n \
         Its type is `ruecache::Cache<Id, T, Codec>`: `Id` is the method's id type (`Id` in \
         `ids: Vec<Id>`, or the type of `id: Id`), `T` the type of the values it returns (`T` in \
         `Result<HashMap<Id, T>, E>` or `Result<Option<T>, E>`) and `Codec` the `codec` \
         argument (`ruecache::MsgPack` by default). It is written through the attribute's \
         helper trait so that type aliases work."
    );
    let cfgs = func.attrs.iter().filter(|attr| attr.path().is_ident("cfg"));
    let vis = &func.vis;
    let generics = &func.sig.generics;
    let where_clause = &generics.where_clause;
    quote! {
        #(#cfgs)*
        #[doc = #doc]
        #[allow(clippy::type_complexity)]
        #vis fn #name #generics(&#self_token) -> #cache_ty
        #where_clause
        {
            static #spec: #private::Spec = #private::Spec::new(
                #private::KeyTemplate::from_parts(&[#(#parts),*]),
                #private::checked(#private::Options::DEFAULT #(#setters)*),
            );
            #cache
        }
    }
}

/// `<Ret as ruecache::__private::Form<Ids>>`: what the compiler knows about the method from its
/// declared return and ids types. All of it, the user's types included, is located at the
/// first token of the return type (keeping each token's own name resolution), so that when the
/// types do not fit, every use reports the same error at the same place and the compiler shows
/// it once.
struct Form {
    /// Where errors about the method's types point.
    span: Span,
    /// The return type, relocated.
    ret: TokenStream,
    /// The ids type, relocated.
    ids: TokenStream,
    /// `<Ret as Form<Ids>>`.
    form: TokenStream,
    /// `::ruecache::__private`, located there.
    private: TokenStream,
}

impl Form {
    fn new(settings: &Settings<'_>, ret_ty: &syn::Type, ids_ty: &syn::Type) -> Self {
        let span = first_span(ret_ty);
        let ret = relocate(ret_ty.to_token_stream(), span);
        let ids = relocate(ids_ty.to_token_stream(), span);
        let private = private(settings, span);
        let form = quote_spanned!(span=> <#ret as #private::Form<#ids>>);
        Self {
            span,
            ret,
            ids,
            form,
            private,
        }
    }

    /// `Fill::<Ret, Ids, <Ret as Form<Ids>>::Id, ::Value, ::Error, ::Shape, _>::fill`: the
    /// cache's work, its types named through the form (so that a return type of another shape
    /// is reported as the form's error, the same as everywhere else), its `Self` left to the
    /// compiler, which takes it from the checks' outcome.
    fn fill(&self) -> TokenStream {
        let Self {
            span,
            ret,
            ids,
            private,
            ..
        } = self;
        let (id, value) = (self.item("Id"), self.item("Value"));
        let (error, shape) = (self.item("Error"), self.item("Shape"));
        quote_spanned!(*span=> #private::Fill::<#ret, #ids, #id, #value, #error, #shape, _>::fill)
    }

    /// `<Ret as Form<Ids>>::name`.
    fn item(&self, name: &str) -> TokenStream {
        let form = &self.form;
        let name = Ident::new(name, self.span);
        quote_spanned!(self.span=> #form::#name)
    }
}

/// The tokens, each located at `span` but resolving names as before.
fn relocate(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|token| match token {
            TokenTree::Group(group) => {
                let mut relocated = Group::new(group.delimiter(), relocate(group.stream(), span));
                relocated.set_span(span.resolved_at(group.span()));
                TokenTree::Group(relocated)
            }
            mut token => {
                token.set_span(span.resolved_at(token.span()));
                token
            }
        })
        .collect()
}

/// `<::ruecache::__private::At>::name(args)`, its first tokens located at the first token of
/// `ty` and its last ones (the name and the parentheses) at the last token of `ty`: the compiler
/// spans the call from its first token to its last, so that what it reports about the call is
/// underlined under the whole of `ty` (a proc macro cannot make a span over several tokens on
/// stable Rust).
fn call_at_type(
    settings: &Settings<'_>,
    ty: &syn::Type,
    name: &str,
    args: TokenStream,
) -> TokenStream {
    let (first, last) = (first_span(ty), last_span(ty));
    let private = private(settings, first);
    let name = Ident::new(name, last);
    let open = quote_spanned!(first=> <);
    let close = quote_spanned!(last=> >::);
    let mut args = Group::new(Delimiter::Parenthesis, args);
    args.set_span(last);
    quote!(#open #private::At #close #name #args)
}

/// `<::ruecache::__private::At>::id()`, the id's check, under the ids type. The method and its
/// companion both call it, written and located the same, so that the compiler shows the same
/// error for both, once.
fn id_check(settings: &Settings<'_>, ids_ty: &syn::Type) -> TokenStream {
    call_at_type(settings, ids_ty, "id", TokenStream::new())
}

/// `::ruecache::__private` (or the `crate = "..."` override's) with the given span.
fn private(settings: &Settings<'_>, span: Span) -> TokenStream {
    let krate = krate(settings, span);
    quote_spanned!(span=> #krate::__private)
}

/// `::ruecache`, or the `crate = "..."` override (which keeps the span of its literal, so that
/// a wrong path is reported there).
fn krate(settings: &Settings<'_>, span: Span) -> TokenStream {
    match &settings.krate {
        Some(path) => path.to_token_stream(),
        None => quote_spanned!(span=> ::ruecache),
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn expand_method(item: TokenStream) -> String {
        expand(quote!(key = "w:{id}"), item).to_string()
    }

    #[test]
    fn the_ids_parameter_keeps_its_name_and_the_body_its_mut() {
        let out = expand_method(quote! {
            async fn get(&self, mut ids: Vec<u64>) -> R { ids.sort(); f(ids) }
        });
        assert!(
            out.contains("async fn get (& self , ids : Vec < u64 >) -> R"),
            "{out}"
        );
        assert!(out.contains("move | mut ids : Vec < u64 > |"), "{out}");
        assert!(!out.contains("__ruecache_ids"), "{out}");
    }

    #[test]
    fn a_destructuring_ids_pattern_is_taken_apart_inside() {
        let out = expand_method(quote! {
            async fn get(&self, Sku(raw): Sku) -> R { f(raw) }
        });
        assert!(
            out.contains("async fn get (& self , __ruecache_ids : Sku) -> R"),
            "{out}"
        );
        assert!(out.contains("move | Sku (raw) : Sku |"), "{out}");
    }

    #[test]
    fn inner_attributes_go_to_the_top_of_the_method_and_the_body_is_moved_as_written() {
        let out = expand_method(quote! {
            async fn get(&self, ids: Vec<u64>) -> R {
                #![allow(unused_variables)]
                let typing = ;
            }
        });
        assert!(
            out.contains("-> R { # ! [allow (unused_variables)]"),
            "{out}"
        );
        assert!(out.contains("{ let typing = ; }"), "{out}");
        assert!(out.contains("fn get_cache"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn near_sets_a_near_cache_with_its_max_age() {
        let item = quote!(
            async fn get(&self, ids: Vec<u64>) -> R {
                f(ids)
            }
        );
        let out = expand(quote!(key = "w:{id}", near = "100"), item.clone()).to_string();
        assert!(
            out.contains(". set_near (:: ruecache :: __private :: NearCache :: new (100))"),
            "{out}"
        );
        let args = quote!(key = "w:{id}", near = 100, near_max_age = "30s");
        let out = expand(args, item).to_string();
        assert!(
            out.contains(
                ". set_near (:: ruecache :: __private :: NearCache :: new (100) . max_age \
                 (:: core :: time :: Duration :: from_millis (30000u64)))"
            ),
            "{out}"
        );
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn only_what_is_not_a_method_gets_the_applies_to_error() {
        let out = expand_method(quote!(
            struct Service;
        ));
        assert!(out.contains("applies to `async fn` methods"), "{out}");
        let broken = quote!(async fn get(&self, ids: Vec<u64>,,) -> R {});
        assert_eq!(expand_method(broken.clone()), broken.to_string());
    }
}
