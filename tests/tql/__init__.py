"""TQL: the parser and the evaluator (gateway/tql), pure, without a gateway."""
