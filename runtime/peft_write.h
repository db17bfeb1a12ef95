/* peft_write.h: writing a PEFT LoRA adapter as PeftModel.save_pretrained
 * does: a directory holding adapter_model.safetensors (the A and B of each
 * adapted module, named base_model.model.<module>.lora_A.weight and
 * .lora_B.weight) and adapter_config.json (the LoraConfig PEFT loads them
 * with), made from the output's LoRA records ("surg.lora"). Written
 * through the layout of st_write.h as a directory output (stw_writer.dir):
 * built under a temporary name and renamed into place whole, so the config
 * never appears without the weights. */
#ifndef SURG_PEFT_WRITE_H
#define SURG_PEFT_WRITE_H

#include "runtime/st_write.h"

#define PW_WEIGHTS "adapter_model.safetensors"
#define PW_CONFIG "adapter_config.json"

/* What every name of an adapter starts with: the PeftModel's base_model
 * (a LoraModel) and the model it wraps. */
#define PW_PREFIX "base_model.model."

/* The writer (fmt_peft's). Its layout refuses an output that is not an
 * adapter: a tensor that is not the A or B of a LoRA record of style peft,
 * a record whose names are not PEFT's, records that disagree on an option
 * PEFT keeps once per adapter (use_rslora, fan_in_fan_out, lora_dropout).
 * Ranks and alphas that differ from the first record's go to the config's
 * rank_pattern and alpha_pattern. */
extern const stw_writer pw_writer;

#endif
