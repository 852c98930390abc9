//! Code for `ToTerm` and `FromTerm`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::{map_pattern, Body, Field, Input, Missing, StructRepr, Variant, VariantShape};

/// `::node_server`.
pub(crate) fn root() -> TokenStream {
    quote!(::node_server)
}

/// The derive plumbing module.
pub(crate) fn private() -> TokenStream {
    quote!(::node_server::message::__private)
}

/// `generics` with `bounds` added to every type parameter.
pub(crate) fn bounded(generics: &syn::Generics, bounds: TokenStream) -> syn::Generics {
    use syn::parse::Parser;
    let bounds =
        syn::punctuated::Punctuated::<syn::TypeParamBound, syn::Token![+]>::parse_terminated
            .parse2(bounds)
            .expect("the derive's own bounds parse");
    let mut generics = generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.extend(bounds.iter().cloned());
    }
    generics
}

/// The term of one field, `value` being an expression of type `&T`.
fn to_term(field: &Field, value: TokenStream) -> TokenStream {
    let root = root();
    let ty = field.ty;
    quote_spanned!(ty.span()=> <#ty as #root::etf::ToTerm>::to_term(#value))
}

/// `#{key => V, ...}` from fields, `value` giving each field's `&T` expression.
fn map_term(fields: &[Field], value: impl Fn(&Field) -> TokenStream) -> TokenStream {
    let private = private();
    if fields.iter().any(|f| f.flatten.is_some()) {
        let pushes = push_entries(fields, value, &quote!(__entries));
        let own = fields.iter().filter(|f| f.flatten.is_none()).count();
        return quote!({
            let mut __vec = ::std::vec::Vec::with_capacity(#own);
            let __entries = &mut __vec;
            #pushes
            #private::map_of_entries(__vec)
        });
    }
    let entries = fields.iter().map(|f| {
        let key = &f.key;
        let v = to_term(f, value(f));
        quote!((#key, #v))
    });
    quote!(#private::map_term([#(#entries),*]))
}

/// Statements adding the map entries of `fields` to `entries` (a `&mut Vec<(Term, Term)>`): a
/// field's own `key => V`, or a flattened field's entries.
fn push_entries(
    fields: &[Field],
    value: impl Fn(&Field) -> TokenStream,
    entries: &TokenStream,
) -> TokenStream {
    let root = root();
    let private = private();
    let pushes = fields.iter().map(|f| {
        let v = value(f);
        if f.flatten.is_some() {
            let ty = f.ty;
            quote_spanned!(ty.span()=> <#ty as #root::etf::ToMapEntries>::to_map_entries(#v, #entries);)
        } else {
            let key = &f.key;
            let v = to_term(f, v);
            quote!(#private::push_entry(#entries, #key, #v);)
        }
    });
    quote!(#(#pushes)*)
}

/// Whether `tokens` name one of `idents`.
fn mentions(tokens: TokenStream, idents: &[String]) -> bool {
    tokens.into_iter().any(|tt| match tt {
        proc_macro2::TokenTree::Ident(i) => idents.iter().any(|p| i == p),
        proc_macro2::TokenTree::Group(g) => mentions(g.stream(), idents),
        _ => false,
    })
}

/// `generics` with `T: ToMapEntries` added for the type `T` of every flattened field of
/// `input` that involves a type parameter, so that a flattened generic parameter needs the
/// trait; any other type that lacks it is an error at the field.
pub(crate) fn with_flatten_bounds(input: &Input, mut generics: syn::Generics) -> syn::Generics {
    let root = root();
    let fields: Vec<&Field> = match &input.body {
        Body::Struct(StructRepr::Map(fields)) => fields.iter().collect(),
        Body::Struct(_) => Vec::new(),
        Body::Enum(variants) => variants.iter().flat_map(|v| &v.fields).collect(),
    };
    // Only where a type parameter is involved: a concrete type's bound is checked at the
    // field itself (a bound on a concrete type would be an error of its own).
    let params: Vec<String> = generics
        .type_params()
        .map(|p| p.ident.to_string())
        .collect();
    let generic = |ty: &syn::Type| mentions(quote!(#ty), &params);
    for field in fields
        .iter()
        .filter(|f| f.flatten.is_some() && generic(f.ty))
    {
        let ty = field.ty;
        generics
            .make_where_clause()
            .predicates
            .push(syn::parse_quote_spanned!(ty.span()=> #ty: #root::etf::ToMapEntries));
    }
    generics
}

/// The atom term `text`: made at compile time when short enough to be stored inline (most
/// tags), so that building a message does not measure and copy its tag's text each time.
fn atom_term(text: &str) -> TokenStream {
    let root = root();
    if text.len() <= 23 {
        quote!({
            const TAG: #root::etf::Atom = #root::etf::Atom::from_static(#text);
            #root::etf::Term::Atom(TAG)
        })
    } else {
        let private = private();
        quote!(#private::atom(#text))
    }
}

/// `{tag, V1, ...}` (or `{V1, ...}` without a tag).
fn tuple_term(
    tag: Option<&str>,
    fields: &[Field],
    value: impl Fn(&Field) -> TokenStream,
) -> TokenStream {
    let root = root();
    let tag = tag.map(|t| {
        let t = atom_term(t);
        quote!(#t,)
    });
    let elems = fields.iter().map(|f| to_term(f, value(f)));
    quote!(#root::etf::Term::Tuple(::std::vec![#tag #(#elems),*]))
}

/// The term of a variant whose fields are bound to their `binding`s (as `&T` when `by_ref`,
/// as `T` otherwise).
pub(crate) fn variant_term(variant: &Variant, by_ref: bool) -> TokenStream {
    let value = |f: &Field| {
        let b = &f.binding;
        if by_ref {
            quote!(#b)
        } else {
            quote!(&#b)
        }
    };
    let atom = &variant.atom;
    match variant.shape {
        VariantShape::Atom => atom_term(atom),
        VariantShape::Tuple => tuple_term(Some(atom), &variant.fields, value),
        VariantShape::Map => {
            let root = root();
            let map = map_term(&variant.fields, value);
            let tag = atom_term(atom);
            quote!(#root::etf::Term::Tuple(::std::vec![#tag, #map]))
        }
        VariantShape::Other => {
            let root = root();
            let v = value(&variant.fields[0]);
            quote!(#root::etf::ToTerm::to_term(#v))
        }
    }
}

/// `Self::V { 0: __f0, key: __f1, .. }`, binding the term's fields (not the reply port).
pub(crate) fn variant_pattern(variant: &Variant) -> TokenStream {
    let ident = variant.ident;
    let binds = variant.fields.iter().map(|f| {
        let (m, b) = (&f.member, &f.binding);
        quote!(#m: #b)
    });
    quote!(Self::#ident { #(#binds,)* .. })
}

pub(crate) fn to_term_impl(input: &Input) -> TokenStream {
    let root = root();
    let ident = input.ident;
    let generics = with_flatten_bounds(input, bounded(input.generics, quote!(#root::etf::ToTerm)));
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let value = |f: &Field| {
        let m = &f.member;
        quote!(&self.#m)
    };
    // A map struct can itself be flattened into another map.
    let map_entries = match &input.body {
        Body::Struct(StructRepr::Map(fields)) => {
            let pushes = push_entries(fields, value, &quote!(__entries));
            quote! {
                #[automatically_derived]
                #[diagnostic::do_not_recommend]
                impl #impl_generics #root::etf::ToMapEntries for #ident #ty_generics #where_clause {
                    fn to_map_entries(
                        &self,
                        __entries: &mut ::std::vec::Vec<(#root::etf::Term, #root::etf::Term)>,
                    ) {
                        #pushes
                    }
                }
            }
        }
        _ => quote!(),
    };
    let body = match &input.body {
        Body::Struct(repr) => match repr {
            StructRepr::Map(fields) => map_term(fields, value),
            StructRepr::Record { tag, fields } => tuple_term(Some(tag), fields, value),
            StructRepr::Transparent(field) => to_term(field, value(field)),
            StructRepr::Tuple(fields) => tuple_term(None, fields, value),
            StructRepr::Atom(atom) => atom_term(atom),
        },
        Body::Enum(variants) if variants.is_empty() => quote!(match *self {}),
        Body::Enum(variants) => {
            let arms = variants.iter().map(|v| {
                let pattern = variant_pattern(v);
                let term = variant_term(v, true);
                quote!(#pattern => #term,)
            });
            quote!(match self { #(#arms)* })
        }
    };
    quote! {
        #[automatically_derived]
        impl #impl_generics #root::etf::ToTerm for #ident #ty_generics #where_clause {
            fn to_term(&self) -> #root::etf::Term {
                #body
            }
        }
        #map_entries
    }
}

/// `Self::V { 0: __f0, ... }` (with `port` as the reply port's value).
pub(crate) fn construct(variant: &Variant, port: Option<TokenStream>) -> TokenStream {
    let ident = variant.ident;
    let fields = variant.fields.iter().map(|f| {
        let (m, b) = (&f.member, &f.binding);
        quote!(#m: #b)
    });
    let port = variant.port.as_ref().zip(port).map(|(p, value)| {
        let m = &p.member;
        quote!(#m: #value)
    });
    quote!(Self::#ident { #(#fields,)* #port })
}

/// Reads one field from a tuple element or map entry; `whole` is the term being read.
fn read_field(field: &Field, source: FieldSource) -> TokenStream {
    let private = private();
    let ty = field.ty;
    let context = &field.context;
    match source {
        FieldSource::Term(term) => {
            quote_spanned!(ty.span()=> #private::field::<#ty>(#term, #context))
        }
        FieldSource::Map {
            map_term: whole_map,
            ..
        } if field.flatten.is_some() => {
            quote_spanned!(ty.span()=> #private::field::<#ty>(#whole_map, #context))
        }
        FieldSource::Map { whole, map, .. } => {
            let key = &field.key;
            match field.missing {
                Missing::Error => {
                    let expected = format!("a map with key {key}");
                    quote_spanned!(ty.span()=> #private::map_field::<#ty>(#whole, #map, #key, #expected, #context))
                }
                Missing::None => quote_spanned!(ty.span()=>
                    #private::map_field_or::<#ty>(#map, #key, #context, || ::core::option::Option::None)
                ),
                Missing::Default => quote_spanned!(ty.span()=>
                    #private::map_field_or::<#ty>(#map, #key, #context, ::core::default::Default::default)
                ),
            }
        }
    }
}

enum FieldSource {
    /// The field's own term.
    Term(TokenStream),
    /// An entry of a map (a flattened field: the whole map).
    Map {
        /// The term being read, for errors.
        whole: TokenStream,
        /// The map, as a `&Term`.
        map_term: TokenStream,
        /// The map, as a `&Map`.
        map: TokenStream,
    },
}

/// One attempt at reading `term` (a `&Term` local) as `variant`: a labeled block that returns
/// `Ok(construct)` when the shape fits and every field converts; otherwise it records the first
/// field error in `err` (an `Option<ConversionError>` local) and falls through.
pub(crate) fn attempt(
    variant: &Variant,
    index: usize,
    term: &TokenStream,
    err: &TokenStream,
    construct: TokenStream,
) -> TokenStream {
    let private = private();
    let label = syn::Lifetime::new(&format!("'__v{index}"), proc_macro2::Span::call_site());
    let atom = &variant.atom;
    let bind = |f: &Field, read: TokenStream| {
        let b = &f.binding;
        quote! {
            let #b = match #read {
                ::core::result::Result::Ok(v) => v,
                ::core::result::Result::Err(e) => {
                    #err.get_or_insert(e);
                    break #label;
                }
            };
        }
    };
    match variant.shape {
        VariantShape::Atom => quote! {
            if #term.is_atom(#atom) {
                return ::core::result::Result::Ok(#construct);
            }
        },
        VariantShape::Tuple => {
            let arity = variant.fields.len();
            let reads = variant
                .fields
                .iter()
                .enumerate()
                .map(|(i, f)| bind(f, read_field(f, FieldSource::Term(quote!(&__elems[#i])))));
            quote! {
                #label: {
                    let ::core::option::Option::Some(__elems) = #private::tagged(#term, #atom, #arity) else {
                        break #label;
                    };
                    #(#reads)*
                    return ::core::result::Result::Ok(#construct);
                }
            }
        }
        VariantShape::Map => {
            let reads = variant.fields.iter().map(|f| {
                let source = FieldSource::Map {
                    whole: term.clone(),
                    map_term: quote!(__map_term),
                    map: quote!(__map),
                };
                bind(f, read_field(f, source))
            });
            quote! {
                #label: {
                    let ::core::option::Option::Some((__map_term, __map)) = #private::tagged_map(#term, #atom) else {
                        break #label;
                    };
                    #(#reads)*
                    return ::core::result::Result::Ok(#construct);
                }
            }
        }
        // The catch-all is not an attempt: it comes last.
        VariantShape::Other => quote!(),
    }
}

/// The body of a function reading `__term` as one of `variants` (all of them casts, or all
/// calls): attempts in order, then the catch-all or an error listing the accepted shapes.
/// `construct` builds the result from a variant whose field bindings are set.
pub(crate) fn read_variants<'a>(
    type_name: &str,
    variants: impl Iterator<Item = &'a Variant<'a>> + Clone,
    construct: impl Fn(&Variant) -> TokenStream,
    what: &str,
) -> TokenStream {
    let root = root();
    let term = quote!(__term);
    let err = quote!(__err);
    let attempts = variants
        .clone()
        .enumerate()
        .map(|(i, v)| attempt(v, i, &term, &err, construct(v)));
    let other = variants.clone().find(|v| v.shape == VariantShape::Other);
    let patterns: Vec<String> = variants
        .filter(|v| v.shape != VariantShape::Other)
        .map(Variant::pattern)
        .collect();
    let expected = if patterns.is_empty() {
        format!("{what}{type_name}, which has none")
    } else {
        format!("{what}{type_name} as one of {}", patterns.join(" | "))
    };
    let end = match other {
        Some(v) => {
            let ident = v.ident;
            quote!(::core::result::Result::Ok(Self::#ident(::core::clone::Clone::clone(#term))))
        }
        None => quote! {
            ::core::result::Result::Err(#err.unwrap_or_else(|| #root::etf::ConversionError::new(#expected, #term)))
        },
    };
    quote! {
        let mut #err: ::core::option::Option<#root::etf::ConversionError> = ::core::option::Option::None;
        #(#attempts)*
        #end
    }
}

pub(crate) fn from_term_impl(input: &Input) -> TokenStream {
    let root = root();
    let private = private();
    let ident = input.ident;
    let name = ident.to_string();
    let generics = bounded(input.generics, quote!(#root::etf::FromTerm));
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let term = quote!(__term);
    let body = match &input.body {
        Body::Struct(repr) => {
            let fields_from = |fields: &[Field], elems: TokenStream| {
                let reads = fields.iter().enumerate().map(|(i, f)| {
                    let m = &f.member;
                    let read = read_field(f, FieldSource::Term(quote!(&#elems[#i])));
                    quote!(#m: #read?)
                });
                quote!(::core::result::Result::Ok(Self { #(#reads),* }))
            };
            let mismatch = |shape: String| {
                let expected = format!("{name} as {shape}");
                quote!(return ::core::result::Result::Err(#root::etf::ConversionError::new(#expected, #term)))
            };
            match repr {
                StructRepr::Map(fields) => {
                    let fail = mismatch(map_pattern(fields));
                    let reads = fields.iter().map(|f| {
                        let m = &f.member;
                        let source = FieldSource::Map {
                            whole: term.clone(),
                            map_term: term.clone(),
                            map: quote!(__map),
                        };
                        let read = read_field(f, source);
                        quote!(#m: #read?)
                    });
                    quote! {
                        let ::core::option::Option::Some(__map) = #private::map(#term) else { #fail };
                        ::core::result::Result::Ok(Self { #(#reads),* })
                    }
                }
                StructRepr::Record { tag, fields } => {
                    let arity = fields.len();
                    let fail = mismatch(format!("{{{tag}{}}}", ", _".repeat(arity)));
                    let build = fields_from(fields, quote!(__elems));
                    quote! {
                        let ::core::option::Option::Some(__elems) = #private::tagged(#term, #tag, #arity) else { #fail };
                        #build
                    }
                }
                StructRepr::Transparent(field) => {
                    let m = &field.member;
                    let read = read_field(field, FieldSource::Term(term.clone()));
                    quote!(::core::result::Result::Ok(Self { #m: #read? }))
                }
                StructRepr::Tuple(fields) => {
                    let arity = fields.len();
                    let underscores = vec!["_"; arity].join(", ");
                    let fail = mismatch(format!("{{{underscores}}}"));
                    let build = fields_from(fields, quote!(__elems));
                    quote! {
                        let ::core::option::Option::Some(__elems) = #private::tuple(#term, #arity) else { #fail };
                        #build
                    }
                }
                StructRepr::Atom(atom) => {
                    let fail = mismatch(atom.clone());
                    quote! {
                        if !#term.is_atom(#atom) { #fail }
                        ::core::result::Result::Ok(Self {})
                    }
                }
            }
        }
        Body::Enum(variants) => read_variants(
            &name,
            variants.iter().filter(|v| v.port.is_none()),
            |v| construct(v, None),
            "",
        ),
    };
    quote! {
        #[automatically_derived]
        impl #impl_generics #root::etf::FromTerm for #ident #ty_generics #where_clause {
            #[allow(unused_mut, unused_variables, unused_labels, unreachable_code)]
            fn from_term(
                #term: &#root::etf::Term,
            ) -> ::core::result::Result<Self, #root::etf::ConversionError> {
                #body
            }
        }
    }
}
