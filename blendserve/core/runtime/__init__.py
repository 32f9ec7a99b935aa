"""Runtimes: the engines that execute requests. Only sglang_* import sglang, lazily."""
