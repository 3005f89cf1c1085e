# Turns a parity fixture (tests/fixtures/NAME.qtf and NAME.json, written by tools/train/make_fixtures.py)
# into C++ arrays for the firmware (tools/firmware/fixture.h): the model file as bytes (64-byte aligned,
# so its tensors are usable in place from flash), the token sequence and, per position, the reference
# logits and per layer entropy S, rank and route.
#   cmake -DFIXTURE=tests/fixtures/NAME -DOUT=fixture_data.cpp -P embed_fixture.cmake
file(READ ${FIXTURE}.qtf hex HEX)
string(LENGTH "${hex}" digits)
math(EXPR model_size "${digits} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," model "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n  " model "${model}")

file(READ ${FIXTURE}.json json)
string(JSON name GET "${json}" name)
string(JSON atol GET "${json}" atol)
string(JSON n_tokens LENGTH "${json}" tokens)
string(JSON vocab LENGTH "${json}" logits 0)
string(JSON n_layers LENGTH "${json}" S 0)
math(EXPR last_t "${n_tokens} - 1")
math(EXPR last_v "${vocab} - 1")
math(EXPR last_l "${n_layers} - 1")

set(tokens "")
set(logits "")
set(entropy "")
set(rank "")
set(quantum "")
foreach(t RANGE ${last_t})
  string(JSON v GET "${json}" tokens ${t})
  string(APPEND tokens "${v}, ")
  string(APPEND logits "\n ")
  foreach(i RANGE ${last_v})
    string(JSON v GET "${json}" logits ${t} ${i})
    string(APPEND logits " ${v}f,")
  endforeach()
  foreach(l RANGE ${last_l})
    string(JSON v GET "${json}" S ${t} ${l})
    string(APPEND entropy "${v}f, ")
    string(JSON v GET "${json}" rank ${t} ${l})
    string(APPEND rank "${v}, ")
    string(JSON v GET "${json}" quantum ${t} ${l})
    string(APPEND quantum "${v}, ")
  endforeach()
endforeach()

file(WRITE ${OUT} "// Generated from tests/fixtures/${name}.qtf and .json by tools/firmware/embed_fixture.cmake\n"
  "#include \"fixture.h\"\n\n"
  "namespace fixture {\n"
  "alignas(64) extern const unsigned char kModel[] = {\n  ${model}\n};\n"
  "extern const size_t kModelSize = ${model_size};\n"
  "extern const char kName[] = \"${name}\";\n"
  "extern const int kTokens = ${n_tokens}, kVocab = ${vocab}, kLayers = ${n_layers};\n"
  "extern const float kLogitTolerance = ${atol}f;\n"
  "extern const int kTokenIds[] = {${tokens}};\n"
  "extern const float kLogits[] = {${logits}\n};\n"
  "extern const float kEntropy[] = {${entropy}};\n"
  "extern const int kRank[] = {${rank}};\n"
  "extern const int kQuantum[] = {${quantum}};\n"
  "}  // namespace fixture\n")
