//! A small typed WGSL writer.
//!
//! Generated kernels are built as a tree of [`Module`], [`Function`], [`Stmt`], [`Expr`] and
//! [`Type`] values and printed once through their `Display` impls. Nothing else in the crate
//! assembles shader text: there are no templates and no string surgery on generated code.
//!
//! The writer only covers what kiln's kernels need (storage bindings, `override` constants,
//! compute entry points and helper functions, `let`/`var`, assignments, `if`, counted `for`
//! loops, blocks, workgroup barriers, builtin calls, conversions, constructors and
//! bitcasts), so every construct it can print is valid WGSL by construction, except for
//! type errors, which naga validation catches in tests and at load time.
//!
//! Printing rules that keep the output unambiguous:
//! - every binary and unary operation is fully parenthesized, so precedence never matters;
//! - literals carry their type suffix (`1.5f`, `3i`, `7u`); values WGSL cannot spell as a
//!   literal (non-finite or subnormal floats, negative zero, `i32::MIN`) are printed as
//!   `bitcast` of their bit pattern.

use std::fmt::{self, Display, Formatter};

/// A scalar type.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scalar {
    /// `f32`
    F32,
    /// `i32`
    I32,
    /// `u32`
    U32,
    /// `bool`
    Bool,
}

/// A WGSL type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// A scalar.
    Scalar(Scalar),
    /// `vecN<scalar>` with N in 2..=4.
    Vec(u8, Scalar),
    /// A runtime-sized `array<scalar>` (storage buffers only).
    RuntimeArray(Scalar),
    /// A runtime-sized `array<vec4<scalar>>` (storage buffers read 4-wide).
    RuntimeArrayVec4(Scalar),
}

/// A literal value.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Literal {
    /// An `f32` value (any bit pattern).
    F32(f32),
    /// An `i32` value.
    I32(i32),
    /// A `u32` value.
    U32(u32),
    /// A `bool`.
    Bool(bool),
}

/// Unary operators.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum UnOp {
    /// `-x`
    Neg,
    /// `!x`
    Not,
}

/// Binary operators.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `&&`
    And,
    /// `||`
    Or,
    /// `^` (integers)
    Xor,
    /// `>>` (integers)
    Shr,
}

/// Builtin functions the kernels call.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// `exp`
    Exp,
    /// `log`
    Log,
    /// `sqrt`
    Sqrt,
    /// `tanh`
    Tanh,
    /// `abs`
    Abs,
    /// `sign`
    Sign,
    /// `max`
    Max,
    /// `min`
    Min,
    /// `pow`
    Pow,
    /// `clamp`
    Clamp,
    /// `select(f, t, cond)`
    Select,
}

impl Builtin {
    fn name(self) -> &'static str {
        match self {
            Builtin::Exp => "exp",
            Builtin::Log => "log",
            Builtin::Sqrt => "sqrt",
            Builtin::Tanh => "tanh",
            Builtin::Abs => "abs",
            Builtin::Sign => "sign",
            Builtin::Max => "max",
            Builtin::Min => "min",
            Builtin::Pow => "pow",
            Builtin::Clamp => "clamp",
            Builtin::Select => "select",
        }
    }
}

/// An expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A literal.
    Lit(Literal),
    /// A named value (binding, `let`, `var`, parameter or override).
    Ident(String),
    /// `base[index]`
    Index(Box<Expr>, Box<Expr>),
    /// `base.field` (vector components such as `x`).
    Member(Box<Expr>, &'static str),
    /// A unary operation.
    Unary(UnOp, Box<Expr>),
    /// A binary operation.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// A builtin function call.
    Call(Builtin, Vec<Expr>),
    /// A call of a function defined in the module.
    CallFn(String, Vec<Expr>),
    /// A value conversion `T(x)`.
    Convert(Scalar, Box<Expr>),
    /// `bitcast<T>(x)` (a scalar or vector type of the same width).
    Bitcast(Type, Box<Expr>),
    /// A value constructor `T(args...)` (e.g. `vec4<f32>(a, b, c, d)`).
    Construct(Type, Vec<Expr>),
}

impl Expr {
    /// A named value.
    pub fn ident(name: impl Into<String>) -> Expr {
        Expr::Ident(name.into())
    }
    /// A `u32` literal.
    pub fn u32(v: u32) -> Expr {
        Expr::Lit(Literal::U32(v))
    }
    /// An `f32` literal.
    pub fn f32(v: f32) -> Expr {
        Expr::Lit(Literal::F32(v))
    }
    /// An `i32` literal.
    pub fn i32(v: i32) -> Expr {
        Expr::Lit(Literal::I32(v))
    }
    /// `self[index]`
    pub fn index(self, index: Expr) -> Expr {
        Expr::Index(Box::new(self), Box::new(index))
    }
    /// `self.field`
    pub fn member(self, field: &'static str) -> Expr {
        Expr::Member(Box::new(self), field)
    }
    /// `self op rhs`
    pub fn bin(self, op: BinOp, rhs: Expr) -> Expr {
        Expr::Binary(op, Box::new(self), Box::new(rhs))
    }
    /// `op self`
    pub fn un(self, op: UnOp) -> Expr {
        Expr::Unary(op, Box::new(self))
    }
    /// `f(args...)`
    pub fn call(f: Builtin, args: Vec<Expr>) -> Expr {
        Expr::Call(f, args)
    }
    /// `T(self)`
    pub fn convert(self, to: Scalar) -> Expr {
        Expr::Convert(to, Box::new(self))
    }
}

/// A statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `let name: ty = value;`
    Let(String, Type, Expr),
    /// `var name: ty = value;`
    Var(String, Type, Expr),
    /// `target = value;`
    Assign(Expr, Expr),
    /// `if (cond) { then } else { otherwise }` (no `else` when empty).
    If(Expr, Vec<Stmt>, Vec<Stmt>),
    /// `for (var v: u32 = start; v < end; v = v + 1u) { body }`
    ForRange {
        /// Loop variable (a `u32`).
        var: String,
        /// First value.
        start: Expr,
        /// Exclusive end.
        end: Expr,
        /// Loop body.
        body: Vec<Stmt>,
    },
    /// `return;` or `return value;`
    Return(Option<Expr>),
    /// `workgroupBarrier();` (uniform control flow only)
    Barrier,
    /// `{ body }`: a scope of its own (so copies of unrolled code may repeat their names).
    Block(Vec<Stmt>),
}

/// Address-space access of a storage binding.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum StorageAccess {
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
}

/// A `@group(g) @binding(b) var<storage, ...> name: ty;` declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    /// Bind group index.
    pub group: u32,
    /// Binding index.
    pub binding: u32,
    /// Variable name.
    pub name: String,
    /// Access mode.
    pub access: StorageAccess,
    /// Element type of the runtime array.
    pub ty: Type,
}

/// An `override name: ty = default;` declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// Constant name (the key of `PipelineCompilationOptions::constants`).
    pub name: String,
    /// Scalar type.
    pub ty: Scalar,
    /// Default value, if any.
    pub default: Option<Literal>,
}

/// A `const name: ty = value;` declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    /// Constant name.
    pub name: String,
    /// Scalar type.
    pub ty: Scalar,
    /// Value.
    pub value: Literal,
}

/// A `@builtin(...)` input of a compute entry point.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BuiltinInput {
    /// `global_invocation_id: vec3<u32>`
    GlobalInvocationId,
    /// `num_workgroups: vec3<u32>`
    NumWorkgroups,
    /// `workgroup_id: vec3<u32>`
    WorkgroupId,
    /// `local_invocation_index: u32`
    LocalInvocationIndex,
}

/// A function parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// Builtin attribute, if any.
    pub builtin: Option<BuiltinInput>,
    /// Parameter name.
    pub name: String,
    /// Parameter type.
    pub ty: Type,
}

/// A function; `workgroup_size: Some(n)` makes it a `@compute` entry point.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    /// Name.
    pub name: String,
    /// `@compute @workgroup_size(n)` when set.
    pub workgroup_size: Option<u32>,
    /// Parameters.
    pub params: Vec<Param>,
    /// Return type (`None`: no value; entry points return nothing).
    pub ret: Option<Type>,
    /// Body.
    pub body: Vec<Stmt>,
}

/// A shader module.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Module {
    /// Leading `//` comment lines (no newlines inside).
    pub comments: Vec<String>,
    /// Module-scope constants.
    pub consts: Vec<Const>,
    /// Pipeline-overridable constants.
    pub overrides: Vec<Override>,
    /// Storage bindings.
    pub bindings: Vec<Binding>,
    /// Uniform bindings of `vec4<u32>` arrays.
    pub uniforms: Vec<UniformArray>,
    /// `var<workgroup> name: array<scalar, len>;` declarations.
    pub workgroup: Vec<(String, Scalar, u32)>,
    /// Functions.
    pub functions: Vec<Function>,
}

/// A `@group(g) @binding(b) var<uniform> name: array<vec4<u32>, len>;` declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct UniformArray {
    /// Bind group index.
    pub group: u32,
    /// Binding index.
    pub binding: u32,
    /// Variable name.
    pub name: String,
    /// Number of `vec4<u32>` entries.
    pub len: u32,
}

impl Display for Scalar {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scalar::F32 => "f32",
            Scalar::I32 => "i32",
            Scalar::U32 => "u32",
            Scalar::Bool => "bool",
        })
    }
}

impl Display for Type {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Type::Scalar(s) => write!(f, "{s}"),
            Type::Vec(n, s) => write!(f, "vec{n}<{s}>"),
            Type::RuntimeArray(s) => write!(f, "array<{s}>"),
            Type::RuntimeArrayVec4(s) => write!(f, "array<vec4<{s}>>"),
        }
    }
}

impl Display for Literal {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match *self {
            Literal::F32(v) => {
                if v == 0.0 && v.is_sign_positive() {
                    f.write_str("0.0f")
                } else if v.is_normal() {
                    // `{:?}` is the shortest round-trip form: `1.0`, `0.1`, `1e-7`, `3.4028235e38`;
                    // each of them followed by `f` is a WGSL f32 literal.
                    let s = format!("{:?}", v.abs());
                    if v < 0.0 {
                        write!(f, "(-{s}f)")
                    } else {
                        write!(f, "{s}f")
                    }
                } else {
                    // inf, NaN, subnormals and -0.0 have no portable literal spelling.
                    write!(f, "bitcast<f32>({:#010x}u)", v.to_bits())
                }
            }
            Literal::I32(v) => {
                if v == i32::MIN {
                    write!(f, "bitcast<i32>({:#010x}u)", v as u32)
                } else if v < 0 {
                    write!(f, "(-{}i)", v.unsigned_abs())
                } else {
                    write!(f, "{v}i")
                }
            }
            Literal::U32(v) => write!(f, "{v}u"),
            Literal::Bool(v) => write!(f, "{v}"),
        }
    }
}

impl Display for BinOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "&&",
            BinOp::Or => "||",
            BinOp::Xor => "^",
            BinOp::Shr => ">>",
        })
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Lit(l) => write!(f, "{l}"),
            Expr::Ident(n) => f.write_str(n),
            Expr::Index(b, i) => write!(f, "{b}[{i}]"),
            Expr::Member(b, m) => write!(f, "{b}.{m}"),
            Expr::Unary(UnOp::Neg, x) => write!(f, "(-{x})"),
            Expr::Unary(UnOp::Not, x) => write!(f, "(!{x})"),
            Expr::Binary(op, a, b) => write!(f, "({a} {op} {b})"),
            Expr::CallFn(name, args) => {
                write!(f, "{name}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            Expr::Call(func, args) => {
                write!(f, "{}(", func.name())?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            Expr::Convert(t, x) => write!(f, "{t}({x})"),
            Expr::Bitcast(t, x) => write!(f, "bitcast<{t}>({x})"),
            Expr::Construct(t, args) => {
                write!(f, "{t}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// A statement list printed at an indentation depth.
struct Block<'a>(&'a [Stmt], usize);

impl Display for Block<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let pad = "    ".repeat(self.1);
        for s in self.0 {
            match s {
                Stmt::Let(n, t, e) => writeln!(f, "{pad}let {n}: {t} = {e};")?,
                Stmt::Var(n, t, e) => writeln!(f, "{pad}var {n}: {t} = {e};")?,
                Stmt::Assign(l, r) => writeln!(f, "{pad}{l} = {r};")?,
                Stmt::Return(None) => writeln!(f, "{pad}return;")?,
                Stmt::Barrier => writeln!(f, "{pad}workgroupBarrier();")?,
                Stmt::Return(Some(e)) => writeln!(f, "{pad}return {e};")?,
                Stmt::Block(body) => {
                    writeln!(f, "{pad}{{")?;
                    write!(f, "{}", Block(body, self.1 + 1))?;
                    writeln!(f, "{pad}}}")?;
                }
                Stmt::If(c, then, otherwise) => {
                    writeln!(f, "{pad}if {c} {{")?;
                    write!(f, "{}", Block(then, self.1 + 1))?;
                    if otherwise.is_empty() {
                        writeln!(f, "{pad}}}")?;
                    } else {
                        writeln!(f, "{pad}}} else {{")?;
                        write!(f, "{}", Block(otherwise, self.1 + 1))?;
                        writeln!(f, "{pad}}}")?;
                    }
                }
                Stmt::ForRange {
                    var,
                    start,
                    end,
                    body,
                } => {
                    writeln!(
                        f,
                        "{pad}for (var {var}: u32 = {start}; {var} < {end}; {var} = {var} + 1u) {{"
                    )?;
                    write!(f, "{}", Block(body, self.1 + 1))?;
                    writeln!(f, "{pad}}}")?;
                }
            }
        }
        Ok(())
    }
}

impl Display for BuiltinInput {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BuiltinInput::GlobalInvocationId => "global_invocation_id",
            BuiltinInput::NumWorkgroups => "num_workgroups",
            BuiltinInput::WorkgroupId => "workgroup_id",
            BuiltinInput::LocalInvocationIndex => "local_invocation_index",
        })
    }
}

impl Display for Function {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(wg) = self.workgroup_size {
            writeln!(f, "@compute @workgroup_size({wg})")?;
        }
        write!(f, "fn {}(", self.name)?;
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if let Some(b) = p.builtin {
                write!(f, "@builtin({b}) ")?;
            }
            write!(f, "{}: {}", p.name, p.ty)?;
        }
        match &self.ret {
            Some(t) => writeln!(f, ") -> {t} {{")?,
            None => writeln!(f, ") {{")?,
        }
        write!(f, "{}", Block(&self.body, 1))?;
        writeln!(f, "}}")
    }
}

impl Display for Module {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for c in &self.comments {
            writeln!(f, "// {c}")?;
        }
        if !self.comments.is_empty() {
            writeln!(f)?;
        }
        for c in &self.consts {
            writeln!(f, "const {}: {} = {};", c.name, c.ty, c.value)?;
        }
        if !self.consts.is_empty() {
            writeln!(f)?;
        }
        for o in &self.overrides {
            match &o.default {
                Some(d) => writeln!(f, "override {}: {} = {d};", o.name, o.ty)?,
                None => writeln!(f, "override {}: {};", o.name, o.ty)?,
            }
        }
        if !self.overrides.is_empty() {
            writeln!(f)?;
        }
        for b in &self.bindings {
            let access = match b.access {
                StorageAccess::Read => "read",
                StorageAccess::ReadWrite => "read_write",
            };
            writeln!(
                f,
                "@group({}) @binding({}) var<storage, {access}> {}: {};",
                b.group, b.binding, b.name, b.ty
            )?;
        }
        for (name, ty, len) in &self.workgroup {
            writeln!(f, "var<workgroup> {name}: array<{ty}, {len}>;")?;
        }
        for u in &self.uniforms {
            writeln!(
                f,
                "@group({}) @binding({}) var<uniform> {}: array<vec4<u32>, {}>;",
                u.group, u.binding, u.name, u.len
            )?;
        }
        for func in &self.functions {
            writeln!(f)?;
            write!(f, "{func}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_literals_are_valid_wgsl_spellings() {
        let cases: &[(f32, &str)] = &[
            (1.0, "1.0f"),
            (0.0, "0.0f"),
            (-2.5, "(-2.5f)"),
            (1e-7, "1e-7f"),
            (3.4028235e38, "3.4028235e38f"),
            (f32::NEG_INFINITY, "bitcast<f32>(0xff800000u)"),
            (-0.0, "bitcast<f32>(0x80000000u)"),
        ];
        for &(v, want) in cases {
            assert_eq!(Literal::F32(v).to_string(), want);
        }
        assert!(Literal::F32(f32::NAN)
            .to_string()
            .starts_with("bitcast<f32>(0x7fc"));
        assert_eq!(
            Literal::I32(i32::MIN).to_string(),
            "bitcast<i32>(0x80000000u)"
        );
        assert_eq!(Literal::I32(-3).to_string(), "(-3i)");
        assert_eq!(Literal::U32(7).to_string(), "7u");
    }

    #[test]
    fn expressions_are_fully_parenthesized() {
        let e = Expr::ident("a")
            .bin(BinOp::Add, Expr::ident("b"))
            .bin(BinOp::Mul, Expr::u32(2));
        assert_eq!(e.to_string(), "((a + b) * 2u)");
    }
}
