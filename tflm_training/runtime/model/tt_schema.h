/* Field numbers and enum values of the TFLite flatbuffer schema (schema
 * version 3) that the runtime reads. Field numbers count from 0 in
 * declaration order, as the FlatBuffers vtable does. */
#ifndef TFLM_TRAINING_TT_SCHEMA_H_
#define TFLM_TRAINING_TT_SCHEMA_H_

#define TT_TFLITE_FILE_IDENTIFIER "TFL3"
#define TT_TFLITE_SCHEMA_VERSION 3

enum { /* table Model */
       TT_MODEL_VERSION = 0,
       TT_MODEL_OPERATOR_CODES = 1,
       TT_MODEL_SUBGRAPHS = 2,
       TT_MODEL_DESCRIPTION = 3,
       TT_MODEL_BUFFERS = 4,
};

enum { /* table OperatorCode */
       TT_OPCODE_DEPRECATED_BUILTIN_CODE = 0,
       TT_OPCODE_CUSTOM_CODE = 1,
       TT_OPCODE_VERSION = 2,
       TT_OPCODE_BUILTIN_CODE = 3,
};

enum { /* table SubGraph */
       TT_SUBGRAPH_TENSORS = 0,
       TT_SUBGRAPH_INPUTS = 1,
       TT_SUBGRAPH_OUTPUTS = 2,
       TT_SUBGRAPH_OPERATORS = 3,
       TT_SUBGRAPH_NAME = 4,
};

enum { /* table Tensor */
       TT_TENSOR_SHAPE = 0,
       TT_TENSOR_TYPE = 1,
       TT_TENSOR_BUFFER = 2,
       TT_TENSOR_NAME = 3,
       TT_TENSOR_QUANTIZATION = 4,
       TT_TENSOR_IS_VARIABLE = 5,
       TT_TENSOR_SPARSITY = 6,
};

enum { /* table QuantizationParameters */
       TT_QUANT_MIN = 0,
       TT_QUANT_MAX = 1,
       TT_QUANT_SCALE = 2,
       TT_QUANT_ZERO_POINT = 3,
       TT_QUANT_DETAILS_TYPE = 4,
       TT_QUANT_DETAILS = 5,
       TT_QUANT_QUANTIZED_DIMENSION = 6,
};

enum { /* table Operator */
       TT_OPERATOR_OPCODE_INDEX = 0,
       TT_OPERATOR_INPUTS = 1,
       TT_OPERATOR_OUTPUTS = 2,
       TT_OPERATOR_BUILTIN_OPTIONS_TYPE = 3,
       TT_OPERATOR_BUILTIN_OPTIONS = 4,
       TT_OPERATOR_CUSTOM_OPTIONS = 5,
       TT_OPERATOR_INTERMEDIATES = 8,
};

enum { /* table Buffer */
       TT_BUFFER_DATA = 0,
       TT_BUFFER_OFFSET = 1,
       TT_BUFFER_SIZE = 2,
};

/* enum TensorType */
typedef enum {
  TT_TYPE_FLOAT32 = 0,
  TT_TYPE_FLOAT16 = 1,
  TT_TYPE_INT32 = 2,
  TT_TYPE_UINT8 = 3,
  TT_TYPE_INT64 = 4,
  TT_TYPE_STRING = 5,
  TT_TYPE_BOOL = 6,
  TT_TYPE_INT16 = 7,
  TT_TYPE_COMPLEX64 = 8,
  TT_TYPE_INT8 = 9,
  TT_TYPE_FLOAT64 = 10,
} tt_tensor_type;

/* enum Padding */
enum { TT_PADDING_SAME = 0, TT_PADDING_VALID = 1 };

/* enum ActivationFunctionType */
enum {
  TT_ACTIVATION_NONE = 0,
  TT_ACTIVATION_RELU = 1,
  TT_ACTIVATION_RELU_N1_TO_1 = 2,
  TT_ACTIVATION_RELU6 = 3,
  TT_ACTIVATION_TANH = 4,
  TT_ACTIVATION_SIGN_BIT = 5,
};

/* enum BuiltinOperator: the codes the runtime has kernels for. */
enum {
  TT_OP_ADD = 0,
  TT_OP_AVERAGE_POOL_2D = 1,
  TT_OP_CONCATENATION = 2,
  TT_OP_CONV_2D = 3,
  TT_OP_DEPTHWISE_CONV_2D = 4,
  TT_OP_DEQUANTIZE = 6,
  TT_OP_FULLY_CONNECTED = 9,
  TT_OP_LOGISTIC = 14,
  TT_OP_MAX_POOL_2D = 17,
  TT_OP_MUL = 18,
  TT_OP_RELU = 19,
  TT_OP_RELU6 = 21,
  TT_OP_RESHAPE = 22,
  TT_OP_SOFTMAX = 25,
  TT_OP_TANH = 28,
  TT_OP_PAD = 34,
  TT_OP_TRANSPOSE = 39,
  TT_OP_MEAN = 40,
  TT_OP_SUB = 41,
  TT_OP_SQUEEZE = 43,
  TT_OP_STRIDED_SLICE = 45,
  TT_OP_SPLIT = 49,
  TT_OP_MAXIMUM = 55,
  TT_OP_MINIMUM = 57,
  TT_OP_PADV2 = 60,
  TT_OP_EXPAND_DIMS = 70,
  TT_OP_RESIZE_NEAREST_NEIGHBOR = 97,
  TT_OP_LEAKY_RELU = 98,
  TT_OP_SPLIT_V = 102,
  TT_OP_QUANTIZE = 114,
  TT_OP_HARD_SWISH = 117,
};

/* union BuiltinOptions: the tag an operator's options table carries. */
enum {
  TT_OPTIONS_NONE = 0,
  TT_OPTIONS_CONV_2D = 1,
  TT_OPTIONS_DEPTHWISE_CONV_2D = 2,
  TT_OPTIONS_POOL_2D = 5,
  TT_OPTIONS_FULLY_CONNECTED = 8,
  TT_OPTIONS_SOFTMAX = 9,
  TT_OPTIONS_CONCATENATION = 10,
  TT_OPTIONS_ADD = 11,
  TT_OPTIONS_RESHAPE = 17,
  TT_OPTIONS_MUL = 21,
  TT_OPTIONS_PAD = 22,
  TT_OPTIONS_TRANSPOSE = 26,
  TT_OPTIONS_REDUCER = 27,
  TT_OPTIONS_SUB = 28,
  TT_OPTIONS_SQUEEZE = 30,
  TT_OPTIONS_STRIDED_SLICE = 32,
  TT_OPTIONS_SPLIT = 35,
  TT_OPTIONS_DEQUANTIZE = 38,
  TT_OPTIONS_MAXIMUM_MINIMUM = 39,
  TT_OPTIONS_PADV2 = 43,
  TT_OPTIONS_EXPAND_DIMS = 52,
  TT_OPTIONS_RESIZE_NEAREST_NEIGHBOR = 74,
  TT_OPTIONS_LEAKY_RELU = 75,
  TT_OPTIONS_SPLIT_V = 79,
  TT_OPTIONS_QUANTIZE = 89,
  TT_OPTIONS_HARD_SWISH = 91,
};

/* Option-table field numbers, one enum per BuiltinOptions table. */
enum { /* Conv2DOptions */
       TT_CONV_PADDING = 0,
       TT_CONV_STRIDE_W = 1,
       TT_CONV_STRIDE_H = 2,
       TT_CONV_ACTIVATION = 3,
       TT_CONV_DILATION_W = 4,
       TT_CONV_DILATION_H = 5,
};
enum { /* DepthwiseConv2DOptions */
       TT_DWCONV_PADDING = 0,
       TT_DWCONV_STRIDE_W = 1,
       TT_DWCONV_STRIDE_H = 2,
       TT_DWCONV_DEPTH_MULTIPLIER = 3,
       TT_DWCONV_ACTIVATION = 4,
       TT_DWCONV_DILATION_W = 5,
       TT_DWCONV_DILATION_H = 6,
};
enum { /* FullyConnectedOptions */
       TT_FC_ACTIVATION = 0,
       TT_FC_WEIGHTS_FORMAT = 1,
       TT_FC_KEEP_NUM_DIMS = 2,
};
enum { /* Pool2DOptions */
       TT_POOL_PADDING = 0,
       TT_POOL_STRIDE_W = 1,
       TT_POOL_STRIDE_H = 2,
       TT_POOL_FILTER_W = 3,
       TT_POOL_FILTER_H = 4,
       TT_POOL_ACTIVATION = 5,
};
enum { TT_ADD_ACTIVATION = 0 };    /* AddOptions */
enum { TT_REDUCER_KEEP_DIMS = 0 }; /* ReducerOptions */
enum { TT_SOFTMAX_BETA = 0 };      /* SoftmaxOptions */
enum {
  TT_CONCAT_AXIS = 0,
  TT_CONCAT_ACTIVATION = 1
}; /* ConcatenationOptions */
enum { TT_RESHAPE_NEW_SHAPE = 0 }; /* ReshapeOptions */
enum { TT_SQUEEZE_DIMS = 0 };      /* SqueezeOptions */
enum { TT_MUL_ACTIVATION = 0 };    /* MulOptions */
enum { TT_SUB_ACTIVATION = 0 };    /* SubOptions */
enum { TT_LEAKY_RELU_ALPHA = 0 };  /* LeakyReluOptions */
enum {                             /* StridedSliceOptions */
       TT_STRIDED_SLICE_BEGIN_MASK = 0,
       TT_STRIDED_SLICE_END_MASK = 1,
       TT_STRIDED_SLICE_ELLIPSIS_MASK = 2,
       TT_STRIDED_SLICE_NEW_AXIS_MASK = 3,
       TT_STRIDED_SLICE_SHRINK_AXIS_MASK = 4,
       TT_STRIDED_SLICE_OFFSET = 5,
};
enum { /* ResizeNearestNeighborOptions */
       TT_RESIZE_ALIGN_CORNERS = 0,
       TT_RESIZE_HALF_PIXEL_CENTERS = 1,
};

#endif /* TFLM_TRAINING_TT_SCHEMA_H_ */
