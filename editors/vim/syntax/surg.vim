" Vim syntax file for surg recipes (.surg): checkpoint surgery.
" Install: see docs/editors.md. Groups follow the scanner's tokens
" (grammar/lexer.l); tests/py/test_editors.py holds them against it.
if exists("b:current_syntax")
  finish
endif

" Words that begin statements, and the words of their clauses.
syn keyword surgStatement rename drop keep fill map tie untie split concat stack unstack
syn keyword surgStatement expect seed layout meta resize
syn match surgStatement "\<\(init\|merge\)-lora"
" `let` only where a statement begins
syn match surgStatement "^\s*\zslet\>"
syn match surgStatement "\(;\s*\)\@<=let\>"
syn keyword surgClause optional rank alpha style as axis sizes
syn keyword surgClause to multiple into config rslora fan_in_fan_out dropout

syn keyword surgType bool f4 f6e2m3 f6e3m2 u8 i8 f8e5m2 f8e4m3 f8e8m0 f8e4m3fnuz f8e5m2fnuz i16 u16 f16 bf16 i32 u32 f32 c64 f64 i64 u64
syn keyword surgConstant flax torch peft
syn match surgFunction "\<\h\w*\ze[ \t]*("

" Characters the scanner takes for no token outside a string (glob
" characters, stray bytes); defined first, so that numbers like .5 win.
syn match surgError %[^ \t\r\x0b\x0cA-Za-z0-9_"#;,=:*/+<>@()\[\]-]%
syn match surgNumber "\<\d\+\(\.\d*\)\=\([eE][+-]\=\d\+\)\="
syn match surgNumber "\.\d\+\([eE][+-]\=\d\+\)\="

syn match surgOperator "->\|\.\.\.\|[<>=!]=\|[-+*/@<>=]"
syn match surgDelimiter "[:,;()\[\]]"

" Strings end at their quote or at the end of the line; inside them, the
" escapes, a template's captures ($1, ${10}, $i, $$) and a pattern's
" wildcards.
syn region surgString start=+"+ skip=+\\.+ end=+"+ end=+$+ contains=surgEscape,surgBadEscape,surgCapture,surgGlob,surgClass,surgAlt oneline
syn match surgBadEscape contained "\\."
syn match surgEscape contained +\\\(x\x\{1,2}\|u\x\{4}\|U\x\{8}\|[ntrbfva\\"'?]\)+
syn match surgCapture contained "\$\(\d\|{\d\+}\|i\|\$\)"
syn match surgGlob contained "\*\*\|[*?]"
syn match surgClass contained %\(\\\)\@<!\[!\=\([^\]"\\]\|\\.\)\+\]%
syn match surgAlt contained "[{},]"

syn match surgComment "#.*$" contains=surgTodo

" A mirror statement, to its end: `factored` and `min` are its clauses'
" words there (elsewhere min(...) is a function).
syn cluster surgInMirror contains=surgClause,surgMirrorClause,surgType,surgConstant,surgFunction,surgError,surgNumber,surgOperator,surgDelimiter,surgString,surgComment
syn region surgMirror matchgroup=surgStatement start="\<mirror\>" end="\ze;" end="$" contains=@surgInMirror oneline keepend
syn keyword surgMirrorClause contained factored min
syn keyword surgTodo contained TODO FIXME XXX

hi def link surgStatement Statement
hi def link surgClause Keyword
hi def link surgMirrorClause Keyword
hi def link surgType Type
hi def link surgConstant Constant
hi def link surgFunction Function
hi def link surgNumber Number
hi def link surgOperator Operator
hi def link surgDelimiter Delimiter
hi def link surgString String
hi def link surgEscape SpecialChar
hi def link surgBadEscape Error
hi def link surgCapture Identifier
hi def link surgGlob Special
hi def link surgClass Special
hi def link surgAlt Special
hi def link surgComment Comment
hi def link surgTodo Todo
hi def link surgError Error

let b:current_syntax = "surg"
