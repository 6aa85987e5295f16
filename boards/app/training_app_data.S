/* The model, the training plan, and the training and test samples with
 * their int32 labels, embedded as they are. tools/training_firmware.py
 * writes these files into the build folder and passes it to the
 * assembler's include path (-Wa,-I); the test files may be empty. */
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

  .section .rodata.app_train_inputs, "a"
  .balign 16
  .global app_train_inputs_start, app_train_inputs_end
app_train_inputs_start:
  .incbin "train_inputs.bin"
app_train_inputs_end:

  .section .rodata.app_train_labels, "a"
  .balign 16
  .global app_train_labels_start, app_train_labels_end
app_train_labels_start:
  .incbin "train_labels.bin"
app_train_labels_end:

  .section .rodata.app_test_inputs, "a"
  .balign 16
  .global app_test_inputs_start, app_test_inputs_end
app_test_inputs_start:
  .incbin "test_inputs.bin"
app_test_inputs_end:

  .section .rodata.app_test_labels, "a"
  .balign 16
  .global app_test_labels_start, app_test_labels_end
app_test_labels_start:
  .incbin "test_labels.bin"
app_test_labels_end:
