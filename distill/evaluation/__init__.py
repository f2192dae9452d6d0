"""`distill eval`: ask any OpenAI-compatible endpoint an exported split, read the replies as the
grader reads the teacher, and report accuracy and termination with honest intervals."""
