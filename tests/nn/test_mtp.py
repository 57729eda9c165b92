"""MTP: embedding and output head are the main model's tensors (same storage, gradients reach them);
speculative decoding with the MTP draft gives exactly the greedy output."""

from __future__ import annotations

import torch

from dsv3sim.nn.generate import generate, generate_speculative_mtp
from dsv3sim.nn.transformer import Transformer


def test_mtp_shares_embedding_and_head(tiny):
    torch.manual_seed(0)
    m = Transformer(tiny)
    names = dict(m.named_parameters())
    assert not any(n.startswith("mtp.") and ("embed" in n or "lm_head" in n) for n in names)  # no copies
    n_mtp = sum(p.numel() for n, p in names.items() if n.startswith("mtp."))
    from dsv3sim.cost.params import count_params

    assert n_mtp == count_params(tiny).mtp
    tok = torch.randint(0, tiny.vocab_size, (2, 8 + 2))
    h = m.hidden(tok[:, :8])
    lg, _ = m.mtp_logits(0, h.detach(), tok[:, 1:9])
    lg.sum().backward()
    assert m.embed_tokens.weight.grad is not None and m.lm_head.weight.grad is not None  # MTP loss reaches them
    ptr_e, ptr_h = m.embed_tokens.weight.data_ptr(), m.lm_head.weight.data_ptr()
    with torch.no_grad():  # editing the main head in place changes the MTP logits: the same storage
        before = m.mtp_logits(0, h, tok[:, 1:9])[0]
        m.lm_head.weight.mul_(2)
        after = m.mtp_logits(0, h, tok[:, 1:9])[0]
    torch.testing.assert_close(after, 2 * before, rtol=1e-5, atol=1e-5)
    assert (ptr_e, ptr_h) == (m.embed_tokens.weight.data_ptr(), m.lm_head.weight.data_ptr())


def test_speculative_equals_greedy(tiny):
    torch.manual_seed(3)
    m = Transformer(tiny)
    with torch.no_grad():  # make the MTP draft the main model's own next-next guess sometimes: copy the block
        m.mtp[0].block.load_state_dict(m.layers[-1].state_dict())
    prompt = torch.randint(0, tiny.vocab_size, (1, 6))
    a = generate(m, prompt, 25)
    b = generate_speculative_mtp(m, prompt, 25)
    assert a.tokens == b.tokens
    assert b.drafted > 0 and 0 <= b.acceptance_rate <= 1
    assert b.main_forwards == 1 + b.drafted and b.main_forwards <= a.main_forwards
    assert len(b.tokens) == 25


def test_mtp_loss_terms(tiny):
    torch.manual_seed(0)
    m = Transformer(tiny)
    tok = torch.randint(0, tiny.vocab_size, (2, 16 + 1 + tiny.num_nextn_predict_layers))
    loss, parts = m.loss(tok)
    assert set(parts) >= {"main", "mtp1"}
    assert abs(float(loss.detach()) - (parts["main"] + 0.3 * parts["mtp1"])) < 1e-4  # lambda = 0.3, D = 1 (V3 eq. 25)
