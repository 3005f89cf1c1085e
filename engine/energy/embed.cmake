# Turns profiles.txt into a C++ string constant (the built-in profiles).
file(READ ${IN} text)
string(REPLACE "\\" "\\\\" text "${text}")
string(REPLACE "\"" "\\\"" text "${text}")
string(REPLACE "\n" "\\n\"\n\"" text "${text}")
file(WRITE ${OUT} "// Generated from engine/energy/profiles.txt\nnamespace qtf::energy {\nextern const char kBuiltinProfiles[] = \"${text}\";\n}\n")
