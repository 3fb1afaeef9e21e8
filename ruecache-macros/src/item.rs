//! Reads the annotated method. Its attributes, visibility and signature are parsed; its body is
//! kept as tokens and never parsed, so that whatever is in it (a half-typed line, syntax this
//! crate's parser does not know) is the compiler's to report, on the body itself, while the
//! method's signature and its companion are still written.

use proc_macro2::{Span, TokenStream};
use syn::parse::{ParseStream, Parser};
use syn::{braced, token, Attribute, Signature, Token, Visibility};

/// What the attribute was put on.
pub(crate) enum Item {
    /// A method with a body.
    Method(Box<MethodItem>),
    /// Something that starts like a function but whose signature does not parse: the compiler
    /// reports that on the item as written.
    BrokenSignature,
    /// Anything else: a struct, a function without a body, ...
    Other,
}

/// `#[attrs] vis default? sig { body }`.
pub(crate) struct MethodItem {
    /// The outer attributes (`#[inline]`, `#[cfg(..)]`, doc comments, other attribute macros).
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) defaultness: Option<Token![default]>,
    pub(crate) sig: Signature,
    pub(crate) body: Body,
}

/// The method's body, unparsed.
pub(crate) struct Body {
    /// The inner attributes at its top (`#![allow(..)]`, `//!` comments): they are the method's,
    /// so the expansion puts them at the top of the generated method's body.
    pub(crate) inner_attrs: Vec<Attribute>,
    /// Everything after them, as written.
    pub(crate) rest: TokenStream,
    /// The braces' span.
    pub(crate) span: Span,
}

/// Reads the item the attribute is on.
pub(crate) fn parse(item: TokenStream) -> Item {
    let head = |input: ParseStream<'_>| {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let defaultness: Option<Token![default]> =
            if input.peek(Token![default]) && !input.peek2(Token![!]) {
                Some(input.parse()?)
            } else {
                None
            };
        let fork = input.fork();
        let starts_like_fn = fork.parse::<Option<Token![const]>>().is_ok()
            && fork.parse::<Option<Token![async]>>().is_ok()
            && fork.parse::<Option<Token![unsafe]>>().is_ok()
            && fork.parse::<Option<syn::Abi>>().is_ok()
            && fork.peek(Token![fn]);
        let rest: TokenStream = input.parse()?;
        Ok((attrs, vis, defaultness, starts_like_fn, rest))
    };
    let Ok((attrs, vis, defaultness, true, rest)) = head.parse2(item) else {
        return Item::Other;
    };
    // `Ok(None)`: a signature without a body (or with more after it), which is something else;
    // `Err`: the signature does not parse.
    let method = |input: ParseStream<'_>| {
        let sig: Signature = input.parse()?;
        if !input.peek(token::Brace) {
            let _: TokenStream = input.parse()?;
            return Ok(None);
        }
        let content;
        let brace = braced!(content in input);
        let body = Body::split(content.parse()?, brace.span.join());
        if !input.is_empty() {
            let _: TokenStream = input.parse()?;
            return Ok(None);
        }
        Ok(Some((sig, body)))
    };
    match method.parse2(rest) {
        Ok(Some((sig, body))) => Item::Method(Box::new(MethodItem {
            attrs,
            vis,
            defaultness,
            sig,
            body,
        })),
        Ok(None) => Item::Other,
        Err(_) => Item::BrokenSignature,
    }
}

impl Body {
    /// Takes the inner attributes off the top of the body's tokens; a malformed one stays in
    /// the body, for the compiler to report there.
    fn split(tokens: TokenStream, span: Span) -> Self {
        let parser = |input: ParseStream<'_>| {
            let inner_attrs = input.call(Attribute::parse_inner)?;
            Ok((inner_attrs, input.parse::<TokenStream>()?))
        };
        let (inner_attrs, rest) = parser
            .parse2(tokens.clone())
            .unwrap_or((Vec::new(), tokens));
        Self {
            inner_attrs,
            rest,
            span,
        }
    }
}

#[cfg(test)]
mod tests {
    use quote::{quote, ToTokens};

    use super::*;

    fn method(tokens: TokenStream) -> MethodItem {
        match parse(tokens) {
            Item::Method(method) => *method,
            Item::BrokenSignature => panic!("read as a broken signature"),
            Item::Other => panic!("read as something else"),
        }
    }

    #[test]
    fn the_body_is_kept_as_written_even_when_it_does_not_parse() {
        let method = method(quote! {
            /// Docs.
            #[inline]
            pub(crate) async fn get(&self, ids: Vec<u64>) -> R {
                let typing = ;
                match
            }
        });
        assert_eq!(method.attrs.len(), 2);
        assert_eq!(method.vis.to_token_stream().to_string(), "pub (crate)");
        assert_eq!(method.sig.ident, "get");
        assert!(method.body.inner_attrs.is_empty());
        assert_eq!(method.body.rest.to_string(), "let typing = ; match");
    }

    #[test]
    fn inner_attributes_are_taken_off_the_body() {
        let method = method(quote! {
            async fn get(&self, ids: Vec<u64>) -> R {
                #![allow(unused_variables)]
                #![doc = "inner"]
                let unused = 1;
                Ok(#[allow(unused)] x)
            }
        });
        let inner: Vec<String> = method
            .body
            .inner_attrs
            .iter()
            .map(|attr| attr.to_token_stream().to_string())
            .collect();
        assert_eq!(
            inner,
            ["# ! [allow (unused_variables)]", "# ! [doc = \"inner\"]"]
        );
        assert_eq!(
            method.body.rest.to_string(),
            "let unused = 1 ; Ok (# [allow (unused)] x)"
        );
    }

    #[test]
    fn a_malformed_inner_attribute_stays_in_the_body() {
        let method = method(quote!(async fn get(&self, ids: Vec<u64>) -> R { #!oops; 1 }));
        assert!(method.body.inner_attrs.is_empty());
        assert_eq!(method.body.rest.to_string(), "# ! oops ; 1");
    }

    #[test]
    fn other_items_and_broken_signatures_are_told_apart() {
        for other in [
            quote!(
                struct Service;
            ),
            quote!(
                async fn get(&self, ids: Vec<u64>) -> R;
            ),
            quote!(async fn get(&self, ids: Vec<u64>) -> R {}, extra),
            quote!(impl Service {}),
            quote!(),
        ] {
            assert!(matches!(parse(other.clone()), Item::Other), "{other}");
        }
        for broken in [
            quote!(async fn get(&self, ids: Vec<u64>,,) -> R { }),
            quote!(async fn get(&self, ids: Vec<u64>) -> Result<HashMap<u64, { }),
            quote!(pub async fn { }),
            quote!(unsafe extern "C" fn get(,) {}),
        ] {
            assert!(
                matches!(parse(broken.clone()), Item::BrokenSignature),
                "{broken}"
            );
        }
    }
}
