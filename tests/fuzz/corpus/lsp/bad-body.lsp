Content-Length: 5

{"a":Content-Length: 49

{"jsonrpc": "2.0", "id": 1, "method": "shutdown"}