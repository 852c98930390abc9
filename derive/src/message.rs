//! Code for `ErlangMessage`: `ractor::Message` and `node_server::message::ErlangMessage`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::{Body, Input};
use crate::term::{
    bounded, construct, private, read_variants, root, variant_term, with_flatten_bounds,
};

pub(crate) fn message_impls(input: &Input) -> TokenStream {
    let root = root();
    let private = private();
    let ident = input.ident;
    let name = ident.to_string();
    let generics = with_flatten_bounds(
        input,
        bounded(
            input.generics,
            quote!(#root::etf::ToTerm + #root::etf::FromTerm + ::core::marker::Send + 'static),
        ),
    );
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let ractor = quote!(#private::ractor);
    let serialized = quote!(#ractor::message::SerializedMessage);
    let downcast_err = quote!(#ractor::message::BoxedDowncastErr);

    let calls: Vec<_> = match &input.body {
        Body::Enum(variants) => variants.iter().filter(|v| v.port.is_some()).collect(),
        Body::Struct(_) => Vec::new(),
    };

    // serialize: calls carry their reply port over as a bytes port; the rest are casts.
    let call_arms = calls.iter().map(|v| {
        let port = v.port.as_ref().expect("calls have ports");
        let vi = v.ident;
        let member = &port.member;
        let binds = v.fields.iter().map(|f| {
            let (m, b) = (&f.member, &f.binding);
            quote!(#m: #b)
        });
        let request = variant_term(v, false);
        let reply = port.reply;
        let call =
            quote_spanned!(reply.span()=> #private::call_message::<#reply>(&__request, __port));
        quote! {
            Self::#vi { #(#binds,)* #member: __port } => {
                let __request = #request;
                ::core::result::Result::Ok(#call)
            }
        }
    });
    let serialize = quote! {
        match self {
            #(#call_arms)*
            __cast => ::core::result::Result::Ok(#private::cast_message(
                &<Self as #root::etf::ToTerm>::to_term(&__cast),
            )),
        }
    };

    // deserialize, accepts_call and call_from_term: pick the call variant by the request's
    // tag and shape.
    let (deserialize_call, accepts_call, call_from_term) = if calls.is_empty() {
        (
            quote!(),
            quote!(false),
            quote!(::core::option::Option::None),
        )
    } else {
        let typed_port = |v: &crate::model::Variant| {
            let reply = v.port.as_ref().expect("calls have ports").reply;
            quote_spanned!(reply.span()=> #private::reply_port_for_call::<#reply>(__reply))
        };
        let read_call = read_variants(
            &name,
            calls.iter().copied(),
            |v| construct(v, Some(typed_port(v))),
            "a call of ",
        );
        let check_call = read_variants(&name, calls.iter().copied(), |_| quote!(()), "a call of ");
        let calling_port = |v: &crate::model::Variant| {
            let reply = v.port.as_ref().expect("calls have ports").reply;
            quote_spanned!(reply.span()=> #private::reply_port_calling::<#reply>(__on_reply.clone()))
        };
        let read_in_process = read_variants(
            &name,
            calls.iter().copied(),
            |v| construct(v, Some(calling_port(v))),
            "a call of ",
        );
        (
            quote! {
                #serialized::Call { args, reply: __reply, .. } => {
                let __term = #private::decode_args(&args)?;
                let __read = || -> ::core::result::Result<Self, #root::etf::ConversionError> {
                    let __term = &__term;
                    #read_call
                };
                __read().map_err(|e| #private::call_rejected::<Self>(&__term, e))
                }
            },
            quote! {{
                let __check = || -> ::core::result::Result<(), #root::etf::ConversionError> {
                    #check_call
                };
                __check().is_ok()
            }},
            quote! {{
                let __read = || -> ::core::result::Result<Self, #root::etf::ConversionError> {
                    let __term = __term;
                    #read_in_process
                };
                __read().ok()
            }},
        )
    };

    quote! {
        #[automatically_derived]
        impl #impl_generics #ractor::Message for #ident #ty_generics #where_clause {
            fn serializable() -> bool {
                true
            }

            #[allow(unreachable_patterns)]
            fn serialize(self) -> ::core::result::Result<#serialized, #downcast_err> {
                #serialize
            }

            #[allow(unused_mut, unused_variables, unused_labels, unreachable_code)]
            fn deserialize(__message: #serialized) -> ::core::result::Result<Self, #downcast_err> {
                match __message {
                    #serialized::Cast { args, .. } => #private::read_cast::<Self>(&args),
                    #deserialize_call
                    _ => ::core::result::Result::Err(#private::unexpected::<Self>(&__message)),
                }
            }
        }

        #[automatically_derived]
        impl #impl_generics #root::message::ErlangMessage for #ident #ty_generics #where_clause {
            fn accepts_cast(term: &#root::etf::Term) -> bool {
                <Self as #root::etf::FromTerm>::from_term(term).is_ok()
            }

            #[allow(unused_mut, unused_variables, unused_labels, unreachable_code)]
            fn accepts_call(__term: &#root::etf::Term) -> bool {
                #accepts_call
            }

            #[allow(unused_mut, unused_variables, unused_labels, unreachable_code)]
            fn call_from_term(
                __term: &#root::etf::Term,
                __on_reply: #root::message::ReplyTo,
            ) -> ::core::option::Option<Self> {
                #call_from_term
            }
        }
    }
}
