"""BERT for sequence classification in plain PyTorch, with Hugging Face's
`BertForSequenceClassification` tensor names and config.json fields, and its
eager forward pass: word + position + token-type embeddings, LayerNorm;
post-LN encoder layers (self-attention with the additive mask
(1 - mask) * finfo(float32).min, GELU in erf form); tanh pooler on the first
token; linear classifier. Dropout is left out (inference only).

    bert.embeddings.{word,position,token_type}_embeddings.weight
    bert.embeddings.LayerNorm.{weight,bias}
    bert.encoder.layer.{i}.attention.self.{query,key,value}.{weight,bias}
    bert.encoder.layer.{i}.attention.output.dense.{weight,bias}
    bert.encoder.layer.{i}.attention.output.LayerNorm.{weight,bias}
    bert.encoder.layer.{i}.intermediate.dense.{weight,bias}
    bert.encoder.layer.{i}.output.dense.{weight,bias}
    bert.encoder.layer.{i}.output.LayerNorm.{weight,bias}
    bert.pooler.dense.{weight,bias}
    classifier.{weight,bias}
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def config_of(vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
              max_position_embeddings, labels, type_vocab_size=2, layer_norm_eps=1e-12):
    return {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "intermediate_size": intermediate_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": max_position_embeddings,
        "type_vocab_size": type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": layer_norm_eps,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "problem_type": "single_label_classification",
        "id2label": {str(i): l for i, l in enumerate(labels)},
        "label2id": {l: i for i, l in enumerate(labels)},
    }


class _Dense(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)


class _DenseLN(nn.Module):
    def __init__(self, n_in, n_out, eps):
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)
        self.LayerNorm = nn.LayerNorm(n_out, eps=eps)


class _SelfAttention(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)


class _Attention(nn.Module):
    def __init__(self, h, eps):
        super().__init__()
        self.self = _SelfAttention(h)
        self.output = _DenseLN(h, h, eps)


class _Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, eps = c["hidden_size"], c["layer_norm_eps"]
        self.heads = c["num_attention_heads"]
        self.attention = _Attention(h, eps)
        self.intermediate = _Dense(h, c["intermediate_size"])
        self.output = _DenseLN(c["intermediate_size"], h, eps)

    def forward(self, x, ext_mask):
        n, s, h = x.shape
        d = h // self.heads
        sa = self.attention.self

        def split(t):
            return t.view(n, s, self.heads, d).permute(0, 2, 1, 3)

        q, k, v = split(sa.query(x)), split(sa.key(x)), split(sa.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d) + ext_mask
        ctx = torch.matmul(F.softmax(scores, dim=-1), v).permute(0, 2, 1, 3).reshape(n, s, h)
        a = self.attention.output
        x = a.LayerNorm(a.dense(ctx) + x)
        inter = F.gelu(self.intermediate.dense(x))  # erf form
        o = self.output
        return o.LayerNorm(o.dense(inter) + x)


class _Embeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c["hidden_size"]
        self.word_embeddings = nn.Embedding(c["vocab_size"], h, padding_idx=c.get("pad_token_id", 0))
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], h)
        self.token_type_embeddings = nn.Embedding(c["type_vocab_size"], h)
        self.LayerNorm = nn.LayerNorm(h, eps=c["layer_norm_eps"])

    def forward(self, ids, types):
        pos = torch.arange(ids.shape[1], dtype=torch.long)[None, :]
        e = self.word_embeddings(ids) + self.token_type_embeddings(types)
        return self.LayerNorm(e + self.position_embeddings(pos))


class _Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([_Layer(c) for _ in range(c["num_hidden_layers"])])


class _Bert(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = _Embeddings(c)
        self.encoder = _Encoder(c)
        self.pooler = _Dense(c["hidden_size"], c["hidden_size"])


class BertForSequenceClassification(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.bert = _Bert(config)
        self.classifier = nn.Linear(config["hidden_size"], len(config["id2label"]))
        self.dropout = nn.Dropout(config.get("hidden_dropout_prob", 0.1))
        std = config.get("initializer_range", 0.02)
        for mod in self.modules():  # Hugging Face's initialisation
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                mod.weight.data.normal_(0.0, std)
                if isinstance(mod, nn.Linear):
                    mod.bias.data.zero_()
            elif isinstance(mod, nn.LayerNorm):
                mod.weight.data.fill_(1.0)
                mod.bias.data.zero_()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        ext = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min
        x = self.bert.embeddings(input_ids, token_type_ids)
        for layer in self.bert.encoder.layer:
            x = self.dropout(x) if self.training else x
            x = layer(x, ext)
        pooled = torch.tanh(self.bert.pooler.dense(x[:, 0]))
        return self.classifier(self.dropout(pooled))
