/* The model and the training plan, embedded as they are; no samples.
 * tools/learner_firmware.py writes these files into the build folder and
 * passes it to the assembler's include path (-Wa,-I). */
  .section .rodata.app_model, "a"
  .balign 16 /* the runtime reads the flatbuffer in place */
  .global app_model_start, app_model_end
app_model_start:
  .incbin "model.tflite"
app_model_end:

  .section .rodata.app_plan, "a"
  .balign 16
  .global app_plan_start, app_plan_end
app_plan_start:
  .incbin "plan.bin"
app_plan_end:
