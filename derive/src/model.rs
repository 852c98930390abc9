//! The derive input, checked and resolved into term shapes.

use std::collections::HashMap;

use proc_macro2::{Ident, Span};
use syn::spanned::Spanned;
use syn::{
    Attribute, Data, DeriveInput, Fields, GenericArgument, LitStr, Member, PathArguments, Type,
};

use crate::naming::{snake_case, unraw};

/// Which derive is reading the input.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `ToTerm` / `FromTerm`: no `#[rpc]`.
    Term,
    /// `ErlangMessage`: `#[rpc]` variants allowed.
    Message,
}

/// The checked input.
pub(crate) struct Input<'a> {
    pub ident: &'a Ident,
    pub generics: &'a syn::Generics,
    pub body: Body<'a>,
}

pub(crate) enum Body<'a> {
    Struct(StructRepr<'a>),
    Enum(Vec<Variant<'a>>),
}

/// How a struct is written as a term.
pub(crate) enum StructRepr<'a> {
    /// `#{key => V, ...}`.
    Map(Vec<Field<'a>>),
    /// `{tag, V1, ...}`.
    Record { tag: String, fields: Vec<Field<'a>> },
    /// The one field's term.
    Transparent(Field<'a>),
    /// `{V1, ...}`.
    Tuple(Vec<Field<'a>>),
    /// `atom`.
    Atom(String),
}

/// What a missing map key reads as.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    Error,
    None,
    Default,
}

pub(crate) struct Field<'a> {
    /// `x` or `0`.
    pub member: Member,
    pub ty: &'a Type,
    /// The map key (named fields).
    pub key: String,
    pub missing: Missing,
    /// `#[term(flatten)]`: the field's own map entries go into the enclosing map.
    pub flatten: Option<Span>,
    /// The local that holds the field in generated code.
    pub binding: Ident,
    /// `Type.field` or `Type::Variant.field`, for errors.
    pub context: String,
}

/// How an enum variant is written as a term.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum VariantShape {
    /// `name` (no data fields).
    Atom,
    /// `{name, V1, ...}`.
    Tuple,
    /// `{name, #{...}}`.
    Map,
    /// The held term itself (`#[term(other)]`).
    Other,
}

pub(crate) struct Variant<'a> {
    pub ident: &'a Ident,
    pub atom: String,
    pub shape: VariantShape,
    /// The fields that make the term (a call's reply port excluded).
    pub fields: Vec<Field<'a>>,
    /// The reply port of an `#[rpc]` variant.
    pub port: Option<ReplyPort<'a>>,
}

pub(crate) struct ReplyPort<'a> {
    pub member: Member,
    /// `T` of `RpcReplyPort<T>`.
    pub reply: &'a Type,
}

impl Variant<'_> {
    /// The Erlang pattern of the variant, for error messages: `{add, _, _}`.
    pub fn pattern(&self) -> String {
        match self.shape {
            VariantShape::Atom => self.atom.clone(),
            VariantShape::Tuple => {
                let mut s = format!("{{{}", self.atom);
                for _ in &self.fields {
                    s.push_str(", _");
                }
                s.push('}');
                s
            }
            VariantShape::Map => format!("{{{}, {}}}", self.atom, map_pattern(&self.fields)),
            VariantShape::Other => "_".to_string(),
        }
    }
}

/// `#{x := _, y := _}`, with `...` for the keys of flattened fields.
pub(crate) fn map_pattern(fields: &[Field]) -> String {
    let mut keys: Vec<String> = fields
        .iter()
        .filter(|f| f.flatten.is_none())
        .map(|f| format!("{} := _", f.key))
        .collect();
    if fields.iter().any(|f| f.flatten.is_some()) {
        keys.push("...".into());
    }
    format!("#{{{}}}", keys.join(", "))
}

/// Collects errors so that one pass reports all of them.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(e) => e.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn at(&mut self, tokens: impl quote::ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(value),
        }
    }
}

const CONTAINER_KEYS: &str = "`record`, `tag`";
const VARIANT_KEYS: &str = "`rename`, `other`";
const FIELD_KEYS: &str = "`rename`, `default`, `flatten`";

#[derive(Default)]
struct ContainerAttrs {
    record: bool,
    tag: Option<LitStr>,
}

#[derive(Default)]
struct VariantAttrs {
    rename: Option<LitStr>,
    other: Option<Span>,
    rpc: Option<Span>,
}

#[derive(Default)]
struct FieldAttrs {
    rename: Option<LitStr>,
    default: bool,
    flatten: Option<Span>,
}

/// Reads `#[term(...)]` attributes, calling `each` for every key.
fn term_attrs(
    attrs: &[Attribute],
    errors: &mut Errors,
    mut each: impl FnMut(&syn::meta::ParseNestedMeta) -> syn::Result<()>,
) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("term")) {
        if let Err(e) = attr.parse_nested_meta(|meta| each(&meta)) {
            errors.push(e);
        }
    }
}

fn string_value(
    meta: &syn::meta::ParseNestedMeta,
    slot: &mut Option<LitStr>,
    key: &str,
) -> syn::Result<()> {
    let lit: LitStr = meta.value()?.parse()?;
    if slot.is_some() {
        return Err(meta.error(format!("duplicate `{key}`")));
    }
    let chars = lit.value().chars().count();
    if chars > 255 {
        return Err(syn::Error::new_spanned(
            &lit,
            format!("an atom has at most 255 characters; this one has {chars}"),
        ));
    }
    *slot = Some(lit);
    Ok(())
}

fn unknown(meta: &syn::meta::ParseNestedMeta, expected: &str) -> syn::Error {
    let key = meta
        .path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_else(|| "this key".into());
    meta.error(format!(
        "unknown `term` attribute `{key}`; expected one of {expected}"
    ))
}

/// Rejects `#[rpc]` where it means nothing.
fn no_rpc(attrs: &[Attribute], errors: &mut Errors, what: &str) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("rpc")) {
        errors.at(
            attr,
            format!("`#[rpc]` goes on enum variants, not on {what}"),
        );
    }
}

fn container_attrs(input: &DeriveInput, errors: &mut Errors) -> ContainerAttrs {
    let mut out = ContainerAttrs::default();
    term_attrs(&input.attrs, errors, |meta| {
        if meta.path.is_ident("record") {
            out.record = true;
            Ok(())
        } else if meta.path.is_ident("tag") {
            string_value(meta, &mut out.tag, "tag")
        } else {
            Err(unknown(meta, CONTAINER_KEYS))
        }
    });
    no_rpc(&input.attrs, errors, "types");
    out
}

fn variant_attrs(variant: &syn::Variant, mode: Mode, errors: &mut Errors) -> VariantAttrs {
    let mut out = VariantAttrs::default();
    term_attrs(&variant.attrs, errors, |meta| {
        if meta.path.is_ident("rename") {
            string_value(meta, &mut out.rename, "rename")
        } else if meta.path.is_ident("other") {
            out.other = Some(meta.path.span());
            Ok(())
        } else {
            Err(unknown(meta, VARIANT_KEYS))
        }
    });
    for attr in variant.attrs.iter().filter(|a| a.path().is_ident("rpc")) {
        if mode == Mode::Term {
            errors.at(
                attr,
                "`#[rpc]` variants need `#[derive(ErlangMessage)]` \
                 (which implements `ToTerm` and `FromTerm` itself)",
            );
        } else if let Err(e) = attr.meta.require_path_only() {
            errors.push(syn::Error::new(e.span(), "`#[rpc]` takes no arguments"));
        } else {
            out.rpc = Some(attr.span());
        }
    }
    out
}

fn field_attrs(field: &syn::Field, errors: &mut Errors) -> FieldAttrs {
    let mut out = FieldAttrs::default();
    let named = field.ident.is_some();
    term_attrs(&field.attrs, errors, |meta| {
        if meta.path.is_ident("rename") {
            if !named {
                return Err(meta.error("`rename` names a map key; tuple fields have none"));
            }
            string_value(meta, &mut out.rename, "rename")
        } else if meta.path.is_ident("default") {
            if !named {
                return Err(meta.error("`default` is for map keys; tuple fields have none"));
            }
            out.default = true;
            Ok(())
        } else if meta.path.is_ident("flatten") {
            if !named {
                return Err(meta.error(
                    "`flatten` merges a map's entries into the enclosing map; tuple fields have none",
                ));
            }
            out.flatten = Some(meta.path.span());
            Ok(())
        } else {
            Err(unknown(meta, FIELD_KEYS))
        }
    });
    if let Some(span) = out.flatten {
        if out.rename.is_some() {
            errors.push(syn::Error::new(
                span,
                "a flattened field has no key of its own, so `rename` means nothing",
            ));
        }
        if out.default {
            errors.push(syn::Error::new(
                span,
                "a flattened field is read from the whole map, not from a key, so `default` means nothing",
            ));
        }
    }
    no_rpc(&field.attrs, errors, "fields");
    out
}

/// The last path segment of a type, if it is a plain path.
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        Type::Group(g) => last_segment(&g.elem),
        Type::Paren(p) => last_segment(&p.elem),
        _ => None,
    }
}

/// `T` of `Name<T>`.
fn single_type_arg<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let segment = last_segment(ty)?;
    if segment.ident != name {
        return None;
    }
    match &segment.arguments {
        PathArguments::AngleBracketed(args) if args.args.len() == 1 => match &args.args[0] {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        },
        _ => None,
    }
}

/// `T` of `RpcReplyPort<T>`.
pub(crate) fn reply_port_type(ty: &Type) -> Option<&Type> {
    single_type_arg(ty, "RpcReplyPort")
}

fn is_option(ty: &Type) -> bool {
    single_type_arg(ty, "Option").is_some()
}

fn is_term(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == "Term" && s.arguments.is_none())
}

fn atom_of(rename: Option<&LitStr>, rust_name: &Ident) -> String {
    rename
        .map(LitStr::value)
        .unwrap_or_else(|| snake_case(&rust_name.to_string()))
}

/// The fields of a struct or variant, `owner` naming it in error contexts.
fn fields<'a>(fields: &'a Fields, owner: &str, errors: &mut Errors) -> Vec<Field<'a>> {
    let mut keys: HashMap<String, Span> = HashMap::new();
    fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let attrs = field_attrs(field, errors);
            let (member, key, rust_name) = match &field.ident {
                Some(ident) => {
                    let own = unraw(&ident.to_string()).to_string();
                    let key = attrs
                        .rename
                        .as_ref()
                        .map(LitStr::value)
                        .unwrap_or(own.clone());
                    (Member::Named(ident.clone()), key, own)
                }
                None => (Member::Unnamed(i.into()), String::new(), i.to_string()),
            };
            if field.ident.is_some() && attrs.flatten.is_none() {
                if let Some(first) = keys.insert(key.clone(), field.span()) {
                    let mut e = syn::Error::new_spanned(
                        field.ident.as_ref(),
                        format!("two fields use the map key `{key}`"),
                    );
                    e.combine(syn::Error::new(first, "first used here"));
                    errors.push(e);
                }
            }
            let missing = if attrs.default {
                Missing::Default
            } else if is_option(&field.ty) {
                Missing::None
            } else {
                Missing::Error
            };
            Field {
                member,
                ty: &field.ty,
                key,
                missing,
                flatten: attrs.flatten,
                binding: Ident::new(&format!("__f{i}"), Span::call_site()),
                context: format!("{owner}.{rust_name}"),
            }
        })
        .collect()
}

/// Rejects reply ports in `fields` (outside `#[rpc]` variants).
fn no_reply_ports<'a>(
    fields: impl IntoIterator<Item = &'a syn::Field>,
    errors: &mut Errors,
    mode: Mode,
) {
    for field in fields {
        if reply_port_type(&field.ty).is_some() {
            let hint = match mode {
                Mode::Message => "mark the variant `#[rpc]` to make it a call",
                Mode::Term => {
                    "reply ports belong to `#[rpc]` variants of `#[derive(ErlangMessage)]` enums"
                }
            };
            errors.at(
                &field.ty,
                format!("an `RpcReplyPort` field cannot be a term: {hint}"),
            );
        }
    }
}

/// Reads and checks the derive input.
pub(crate) fn parse(input: &DeriveInput, mode: Mode) -> syn::Result<Input<'_>> {
    let mut errors = Errors::default();
    let attrs = container_attrs(input, &mut errors);
    let name = input.ident.to_string();
    let body = match &input.data {
        Data::Struct(data) => {
            no_reply_ports(&data.fields, &mut errors, mode);
            let list = fields(&data.fields, &name, &mut errors);
            let tag = atom_of(attrs.tag.as_ref(), &input.ident);
            let repr = match (&data.fields, attrs.record) {
                (Fields::Unit, true) => {
                    errors.at(
                        &input.ident,
                        "`#[term(record)]` needs fields; a unit struct is an atom (set it with `tag`)",
                    );
                    StructRepr::Atom(tag)
                }
                (_, true) => {
                    for span in list.iter().filter_map(|f| f.flatten) {
                        errors.push(syn::Error::new(
                            span,
                            "`flatten` merges into a map, and a `#[term(record)]` struct is a tuple",
                        ));
                    }
                    StructRepr::Record { tag, fields: list }
                }
                (Fields::Named(_), false) => {
                    if let Some(tag) = &attrs.tag {
                        errors.at(tag, "`tag` needs `#[term(record)]` on a struct with named fields (a map has no tag)");
                    }
                    StructRepr::Map(list)
                }
                (Fields::Unit, false) => StructRepr::Atom(tag),
                (Fields::Unnamed(_), false) if list.is_empty() => StructRepr::Atom(tag),
                (Fields::Unnamed(_), false) => {
                    if let Some(tag) = &attrs.tag {
                        errors.at(tag, "`tag` needs `#[term(record)]` on a tuple struct");
                    }
                    if list.len() == 1 {
                        StructRepr::Transparent(list.into_iter().next().expect("one field"))
                    } else {
                        StructRepr::Tuple(list)
                    }
                }
            };
            Body::Struct(repr)
        }
        Data::Enum(data) => {
            if attrs.record {
                errors.at(&input.ident, "`#[term(record)]` applies to structs");
            }
            if let Some(tag) = &attrs.tag {
                errors.at(
                    tag,
                    "`tag` applies to structs; rename variants with `#[term(rename = \"...\")]`",
                );
            }
            Body::Enum(variants(input, data, mode, &mut errors))
        }
        Data::Union(u) => {
            errors.at(u.union_token, "unions cannot be terms");
            Body::Struct(StructRepr::Atom(String::new()))
        }
    };
    errors.finish(Input {
        ident: &input.ident,
        generics: &input.generics,
        body,
    })
}

fn variants<'a>(
    input: &'a DeriveInput,
    data: &'a syn::DataEnum,
    mode: Mode,
    errors: &mut Errors,
) -> Vec<Variant<'a>> {
    let mut out = Vec::with_capacity(data.variants.len());
    let mut other_seen: Option<&Ident> = None;
    // (is a call, atom, shape, arity) -> the variant that has it
    let mut shapes: HashMap<(bool, String, u8, usize), &Ident> = HashMap::new();
    for variant in &data.variants {
        let attrs = variant_attrs(variant, mode, errors);
        let owner = format!("{}::{}", input.ident, variant.ident);
        let atom = atom_of(attrs.rename.as_ref(), &variant.ident);

        if let Some(span) = attrs.other {
            let single_term = matches!(&variant.fields, Fields::Unnamed(f) if f.unnamed.len() == 1 && is_term(&f.unnamed[0].ty));
            if !single_term {
                errors.push(syn::Error::new(
                    variant.ident.span(),
                    "`#[term(other)]` needs a variant with a single `Term` field, like `Other(Term)`",
                ));
            } else if let Some(first) = other_seen {
                errors.push(syn::Error::new(
                    span,
                    format!("only one variant can be `#[term(other)]`, and `{first}` already is"),
                ));
            } else if attrs.rename.is_some() {
                errors.push(syn::Error::new(
                    span,
                    "an `#[term(other)]` variant holds the term as it is, so `rename` means nothing",
                ));
            }
            other_seen.get_or_insert(&variant.ident);
        }

        // An `#[rpc]` variant's last field is its reply port; the rest make the request.
        let mut port = None;
        let mut data_fields: Vec<&syn::Field> = variant.fields.iter().collect();
        if attrs.rpc.is_some() {
            match variant.fields.iter().last() {
                Some(last) if reply_port_type(&last.ty).is_some() => {
                    let index = variant.fields.len() - 1;
                    port = Some(ReplyPort {
                        member: match &last.ident {
                            Some(ident) => Member::Named(ident.clone()),
                            None => Member::Unnamed(index.into()),
                        },
                        reply: reply_port_type(&last.ty).expect("checked"),
                    });
                    data_fields.pop();
                }
                _ => {
                    match variant.fields.iter().find(|f| reply_port_type(&f.ty).is_some()) {
                        Some(misplaced) => errors.at(
                            &misplaced.ty,
                            "the `RpcReplyPort` of an `#[rpc]` variant must be its last field",
                        ),
                        None => errors.at(
                            &variant.ident,
                            "an `#[rpc]` variant needs a last field of type `RpcReplyPort<T>` for the reply",
                        ),
                    }
                    // Reported; do not report its ports again below.
                    data_fields.clear();
                }
            }
            if let Some(span) = attrs.other {
                errors.push(syn::Error::new(
                    span,
                    "a call cannot be the `#[term(other)]` catch-all",
                ));
            }
        }
        no_reply_ports(data_fields, errors, mode);

        // Fields borrow from the input, so build them from the real variant and drop the port.
        let mut list = fields(&variant.fields, &owner, errors);
        if port.is_some() {
            list.pop();
        }
        let shape = if attrs.other.is_some() {
            VariantShape::Other
        } else if list.is_empty() {
            VariantShape::Atom
        } else if matches!(variant.fields, Fields::Named(_)) {
            VariantShape::Map
        } else {
            VariantShape::Tuple
        };
        if shape != VariantShape::Other {
            let (kind, arity) = match shape {
                VariantShape::Atom => (0, 0),
                VariantShape::Tuple => (1, list.len()),
                _ => (2, 0),
            };
            if let Some(first) =
                shapes.insert((port.is_some(), atom.clone(), kind, arity), &variant.ident)
            {
                errors.at(
                    &variant.ident,
                    format!(
                        "variant `{}` has the same term shape as `{first}` (tag `{atom}`), so it could never be read; \
                         give one of them another atom with `#[term(rename = \"...\")]`",
                        variant.ident
                    ),
                );
            }
        }
        out.push(Variant {
            ident: &variant.ident,
            atom,
            shape,
            fields: list,
            port,
        });
    }
    out
}
