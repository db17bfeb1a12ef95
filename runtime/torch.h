/* torch.h: what the PyTorch reader (torch.c) hands on besides tensors. */
#ifndef SURG_TORCH_H
#define SURG_TORCH_H

/* The values of a torch.save file that are not tensors (ints, floats,
 * bools, strings, None), kept as the metadata PT_VALUES_KEY (the reader's
 * paths_meta, format.h): a JSON object of their paths (named as tensors
 * are, joined with ".") and strings, each the JSON text of the value
 * ("7", "0.001", "\"run-3\"", "true", "null"), in the pickle's order. A
 * recipe's value("PATH") reads it (compiler/meta.c); no output writes it:
 * it is the input's record (runtime/plan_meta.c). At most PT_MAX_VALUE_BYTES
 * of value text and PT_MAX_VALUE_PATHS bytes of paths, or none is kept. */
#define PT_VALUES_KEY "torch.values"
#define PT_MAX_VALUE_BYTES (64u << 10)
#define PT_MAX_VALUE_PATHS (1u << 20)

#endif
