/* The model and the inputs, embedded as they are. tools/firmware_build.py
 * puts model.tflite and inputs.bin in the build folder and passes it to
 * the assembler's include path (-Wa,-I). */
  .section .rodata.app_model, "a"
  .balign 16 /* the runtime reads the flatbuffer in place */
  .global app_model_start, app_model_end
app_model_start:
  .incbin "model.tflite"
app_model_end:

  .section .rodata.app_inputs, "a"
  .balign 16
  .global app_inputs_start, app_inputs_end
app_inputs_start:
  .incbin "inputs.bin"
app_inputs_end:
