" surg recipes: the filetype, for editors/vim/syntax/surg.vim.
autocmd BufRead,BufNewFile *.surg setfiletype surg
