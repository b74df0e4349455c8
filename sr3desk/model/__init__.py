"""Search-R3 model reading: prompts, GGUF inspection, the llama.cpp runtime."""
