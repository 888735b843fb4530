"""Function-call-heavy pure Python: a tiny stack-machine interpreter.

Measures the profiler's cost on Python function calls and frame changes with almost no allocation of its own:
every bytecode is one call through a dispatch table, as in an interpreter written in Python.
"""

from _common import scaled

PUSH, ADD, SUB, MUL, DUP, SWAP, JNZ, CALL, RET, LOAD, STORE, MOD, HALT = range(13)


class Machine:
    def __init__(self, code):
        self.code = code
        self.stack = []
        self.frames = []
        self.vars = [0] * 8
        self.pc = 0


def op_push(m, arg):
    m.stack.append(arg)


def op_add(m, arg):
    b = m.stack.pop()
    m.stack.append(m.stack.pop() + b)


def op_sub(m, arg):
    b = m.stack.pop()
    m.stack.append(m.stack.pop() - b)


def op_mul(m, arg):
    b = m.stack.pop()
    m.stack.append(m.stack.pop() * b)


def op_mod(m, arg):
    b = m.stack.pop()
    m.stack.append(m.stack.pop() % b)


def op_dup(m, arg):
    m.stack.append(m.stack[-1])


def op_swap(m, arg):
    m.stack[-1], m.stack[-2] = m.stack[-2], m.stack[-1]


def op_jnz(m, arg):
    if m.stack.pop():
        m.pc = arg


def op_call(m, arg):
    m.frames.append(m.pc)
    m.pc = arg


def op_ret(m, arg):
    m.pc = m.frames.pop()


def op_load(m, arg):
    m.stack.append(m.vars[arg])


def op_store(m, arg):
    m.vars[arg] = m.stack.pop()


DISPATCH = [op_push, op_add, op_sub, op_mul, op_dup, op_swap, op_jnz, op_call, op_ret, op_load, op_store, op_mod]


def run(m):
    code = m.code
    dispatch = DISPATCH
    while True:
        op, arg = code[m.pc]
        m.pc += 1
        if op == HALT:
            return
        dispatch[op](m, arg)


def program(iterations):
    # var0 = counter, var1 = accumulator. Loop: acc = (acc * 31 + step(counter)) % 1000003 where step is a CALL.
    return [
        (PUSH, iterations), (STORE, 0),      # 0, 1
        (PUSH, 7), (STORE, 1),               # 2, 3
        (LOAD, 1), (PUSH, 31), (MUL, 0),     # 4, 5, 6   loop start
        (LOAD, 0), (CALL, 20), (ADD, 0),     # 7, 8, 9
        (PUSH, 1000003), (MOD, 0), (STORE, 1),  # 10, 11, 12
        (LOAD, 0), (PUSH, 1), (SUB, 0), (DUP, 0), (STORE, 0),  # 13..17
        (JNZ, 4),                            # 18
        (HALT, 0),                           # 19
        (DUP, 0), (MUL, 0), (PUSH, 3), (ADD, 0), (RET, 0),   # 20..24: step(x) = x*x + 3
    ]


def main():
    m = Machine(program(scaled(800_000)))
    run(m)
    assert not m.stack and not m.frames
    print(m.vars[1])


if __name__ == "__main__":
    main()
