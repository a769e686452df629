"""The fixed evaluator: prints one number. The researcher cannot change this file."""

import solution

target = [(x, 0.8 * x) for x in range(1, 11)]
error = sum(abs(solution.solve(x) - y) for x, y in target)
print(f"score: {-error:.6f}")
