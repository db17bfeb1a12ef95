Content-Length: 198

{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"rootUri": "untitled:", "capabilities": {"general": {"positionEncodings": []}}, "initializationOptions": {"surg": {"from": "m.json"}}}}Content-Length: 57

{"jsonrpc": "2.0", "method": "initialized", "params": {}}Content-Length: 292

{"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {"uri": "untitled:r.surg", "languageId": "surg", "version": 1, "text": "# surg: from m.json\nrename \"params/Dense_0/**\" -> \"p/$1\"\nmap \"p/*\" = x * 2 ; drop \"layers.*.w\"\nexpect \"p/k\u00e9\ud83d\ude00"}}}Content-Length: 157

{"jsonrpc": "2.0", "id": 10, "method": "textDocument/hover", "params": {"textDocument": {"uri": "untitled:r.surg"}, "position": {"line": 1, "character": 9}}}Content-Length: 162

{"jsonrpc": "2.0", "id": 20, "method": "textDocument/completion", "params": {"textDocument": {"uri": "untitled:r.surg"}, "position": {"line": 1, "character": 9}}}Content-Length: 157

{"jsonrpc": "2.0", "id": 11, "method": "textDocument/hover", "params": {"textDocument": {"uri": "untitled:r.surg"}, "position": {"line": 2, "character": 6}}}Content-Length: 162

{"jsonrpc": "2.0", "id": 21, "method": "textDocument/completion", "params": {"textDocument": {"uri": "untitled:r.surg"}, "position": {"line": 2, "character": 6}}}Content-Length: 158

{"jsonrpc": "2.0", "id": 12, "method": "textDocument/hover", "params": {"textDocument": {"uri": "untitled:r.surg"}, "position": {"line": 2, "character": 25}}}Content-Length: 163

{"jsonrpc": "2.0", "id": 22, "method": "textDocument/completion", "params": {"textDocument": {"uri": "untitled:r.surg"}, "position": {"line": 2, "character": 25}}}Content-Length: 158

{"jsonrpc": "2.0", "id": 13, "method": "textDocument/hover", "params": {"textDocument": {"uri": "untitled:r.surg"}, "position": {"line": 3, "character": 12}}}Content-Length: 163

{"jsonrpc": "2.0", "id": 23, "method": "textDocument/completion", "params": {"textDocument": {"uri": "untitled:r.surg"}, "position": {"line": 3, "character": 12}}}Content-Length: 158

{"jsonrpc": "2.0", "id": 14, "method": "textDocument/hover", "params": {"textDocument": {"uri": "untitled:r.surg"}, "position": {"line": 3, "character": 15}}}Content-Length: 163

{"jsonrpc": "2.0", "id": 24, "method": "textDocument/completion", "params": {"textDocument": {"uri": "untitled:r.surg"}, "position": {"line": 3, "character": 15}}}Content-Length: 157

{"jsonrpc": "2.0", "id": 15, "method": "textDocument/hover", "params": {"textDocument": {"uri": "untitled:r.surg"}, "position": {"line": 0, "character": 3}}}Content-Length: 162

{"jsonrpc": "2.0", "id": 25, "method": "textDocument/completion", "params": {"textDocument": {"uri": "untitled:r.surg"}, "position": {"line": 0, "character": 3}}}Content-Length: 250

{"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {"textDocument": {"uri": "untitled:r.surg", "version": 2}, "contentChanges": [{"range": {"start": {"line": 2, "character": 4}, "end": {"line": 2, "character": 7}}, "text": "\"q/*\""}]}}Content-Length: 136

{"jsonrpc": "2.0", "id": 30, "method": "textDocument/formatting", "params": {"textDocument": {"uri": "untitled:r.surg"}, "options": {}}}Content-Length: 124

{"jsonrpc": "2.0", "method": "workspace/didChangeConfiguration", "params": {"settings": {"surg": {"from": "nowhere.json"}}}}Content-Length: 50

{"jsonrpc": "2.0", "id": 40, "method": "shutdown"}Content-Length: 36

{"jsonrpc": "2.0", "method": "exit"}