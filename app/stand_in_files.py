"""The small files of the Hub checkpoints that the stand-ins copy: configurations, processor and tokenizer settings.

Each dict is the file's content in the file's key order; ``stand_ins.hub_json`` writes it the way the Hub file is
written, so that the file has the Hub file's exact size (tests/test_stand_ins.py checks the sizes the Hub lists).
Where each one comes from, and how sure that is, is in docs/paper-size.md:

- verbatim copies of the Hub files (git blobs kept in public mirrors): CLIP ViT-B/32's config.json (the 55 keys its
  text and vision towers share written once, in the file's key order, so the written file is the same bytes),
  tokenizer_config.json and special_tokens_map.json; every Stable Diffusion 1.5 file (Riffusion v1 is SD 1.5 fine-tuned
  with no change of architecture or files);
- reconstructions whose byte size equals the size the Hub lists for the file: CLIP's and AST's preprocessor configs,
  AST's config (its 527 AudioSet labels), the CLAP processor and tokenizer files, ControlNet's config, MusicGen's
  preprocessor config;
- CLAP's configuration: only the values that differ from ``ClapConfig()``, as a re-save of the Hub file shows them
  (the Hub file is a full transformers 4.27 dump; the stand-in writes the full dump of the installed transformers);
- MusicGen's generation config: the fields the Hub's update of it added, at the Hub's byte size (inferred).

The AudioSet class names are the AudioSet ontology's (CC BY-SA 4.0), in the order of its class_labels_indices.csv,
which is the order of AST's classifier.
"""

from __future__ import annotations

_OWN = object()  # a key whose value each tower gives (_clip_tower)
# The key order and the shared values of both towers' dumps in CLIP ViT-B/32's config.json: transformers 4.16's
# PretrainedConfig fields (legacy generation keys included) and CLIP's, 55 of each tower's 64 keys.
_CLIP_TOWER_4_16 = {
    "_name_or_path": "",
    "add_cross_attention": False,
    "architectures": None,
    "attention_dropout": 0.0,
    "bad_words_ids": None,
    "bos_token_id": _OWN,
    "chunk_size_feed_forward": 0,
    "cross_attention_hidden_size": None,
    "decoder_start_token_id": None,
    "diversity_penalty": 0.0,
    "do_sample": False,
    "dropout": 0.0,
    "early_stopping": False,
    "encoder_no_repeat_ngram_size": 0,
    "eos_token_id": _OWN,
    "finetuning_task": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "hidden_act": "quick_gelu",
    "hidden_size": _OWN,
    "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
    "image_size": _OWN,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": _OWN,
    "is_decoder": False,
    "is_encoder_decoder": False,
    "label2id": {"LABEL_0": 0, "LABEL_1": 1},
    "layer_norm_eps": 1e-05,
    "length_penalty": 1.0,
    "max_length": 20,
    "max_position_embeddings": _OWN,
    "min_length": 0,
    "model_type": _OWN,
    "no_repeat_ngram_size": 0,
    "num_attention_heads": _OWN,
    "num_beam_groups": 1,
    "num_beams": 1,
    "num_hidden_layers": 12,
    "num_return_sequences": 1,
    "output_attentions": False,
    "output_hidden_states": False,
    "output_scores": False,
    "pad_token_id": _OWN,
    "patch_size": _OWN,
    "prefix": None,
    "projection_dim": 512,
    "problem_type": None,
    "pruned_heads": {},
    "remove_invalid_values": False,
    "repetition_penalty": 1.0,
    "return_dict": True,
    "return_dict_in_generate": False,
    "sep_token_id": None,
    "task_specific_params": None,
    "temperature": 1.0,
    "tie_encoder_decoder": False,
    "tie_word_embeddings": True,
    "tokenizer_class": None,
    "top_k": 50,
    "top_p": 1.0,
    "torch_dtype": None,
    "torchscript": False,
    "transformers_version": "4.16.0.dev0",
    "use_bfloat16": False,
    "vocab_size": _OWN,
}


def _clip_tower(**own: object) -> dict:
    """One tower of CLIP ViT-B/32's config.json: its own values at their places in the shared key order."""
    unknown = set(own) - {k for k, v in _CLIP_TOWER_4_16.items() if v is _OWN}
    if unknown:
        raise KeyError(f"not a per-tower key of the CLIP config: {sorted(unknown)}")
    return {k: own[k] if v is _OWN else v for k, v in _CLIP_TOWER_4_16.items() if v is not _OWN or k in own}


# openai/clip-vit-base-patch32 config.json: a transformers 4.16 full dump (legacy generation keys, null
# transformers_version at the top). Kept as is: text_config eos_token_id 2 makes CLIPTextModel pool at argmax(input_ids),
# which lands on <|endoftext|> because it is the highest token id (49407).
CLIP_CONFIG = {
    "_name_or_path": "openai/clip-vit-base-patch32",
    "architectures": ["CLIPModel"],
    "initializer_factor": 1.0,
    "logit_scale_init_value": 2.6592,
    "model_type": "clip",
    "projection_dim": 512,
    "text_config": _clip_tower(
        bos_token_id=0,
        eos_token_id=2,
        hidden_size=512,
        intermediate_size=2048,
        max_position_embeddings=77,
        model_type="clip_text_model",
        num_attention_heads=8,
        pad_token_id=1,
        vocab_size=49408,
    ),
    "text_config_dict": None,
    "transformers_version": None,
    "vision_config": _clip_tower(
        bos_token_id=None,
        eos_token_id=None,
        hidden_size=768,
        image_size=224,
        intermediate_size=3072,
        model_type="clip_vision_model",
        num_attention_heads=12,
        pad_token_id=None,
        patch_size=32,
    ),
    "vision_config_dict": None,
}

# preprocessor_config.json (loads as CLIPImageProcessor: shortest edge 224, centre crop 224, bicubic).
CLIP_PREPROCESSOR_CONFIG = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}

# tokenizer_config.json and special_tokens_map.json: one-line files.
CLIP_TOKENIZER_CONFIG = {
    "unk_token": {
        "content": "<|endoftext|>",
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": True,
        "__type": "AddedToken",
    },
    "bos_token": {
        "content": "<|startoftext|>",
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": True,
        "__type": "AddedToken",
    },
    "eos_token": {
        "content": "<|endoftext|>",
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": True,
        "__type": "AddedToken",
    },
    "pad_token": "<|endoftext|>",
    "add_prefix_space": False,
    "errors": "replace",
    "do_lower_case": True,
    "name_or_path": "./clip_ViT_B_32/",
    "model_max_length": 77,
}

#
CLIP_SPECIAL_TOKENS_MAP = {
    "bos_token": {
        "content": "<|startoftext|>",
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": True,
    },
    "eos_token": {
        "content": "<|endoftext|>",
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": True,
    },
    "unk_token": {
        "content": "<|endoftext|>",
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": True,
    },
    "pad_token": "<|endoftext|>",
}

# MIT/ast-finetuned-audioset-10-10-0.4593 config.json: ASTConfig()'s architecture plus the 527 AudioSet labels.
AST_CONFIG_FIELDS = {
    "architectures": ["ASTForAudioClassification"],
    "attention_probs_dropout_prob": 0.0,
    "frequency_stride": 10,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-12,
    "max_length": 1024,
    "model_type": "audio-spectrogram-transformer",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "num_mel_bins": 128,
    "patch_size": 16,
    "qkv_bias": True,
    "time_stride": 10,
    "torch_dtype": "float32",
    "transformers_version": "4.25.0.dev0",
}

# preprocessor_config.json (= ASTFeatureExtractor() defaults: 16 kHz, 1024 frames of 128 mel bins).
AST_PREPROCESSOR_CONFIG = {
    "do_normalize": True,
    "feature_extractor_type": "ASTFeatureExtractor",
    "feature_size": 1,
    "max_length": 1024,
    "mean": -4.2677393,
    "num_mel_bins": 128,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": False,
    "sampling_rate": 16000,
    "std": 4.5689974,
}

# laion/clap-htsat-unfused config.json as its differences from the class defaults (HTSAT-tiny audio, RoBERTa-base text).
CLAP_CONFIG_NON_DEFAULTS = {
    "_name_or_path": "laion/clap-htsat-unfused",
    "architectures": ["ClapModel"],
    "audio_config": {"fusion_num_hidden_layers": 2, "model_type": "clap_audio_model", "projection_hidden_size": 768},
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "logit_scale_init_value": 14.285714285714285,
    "model_type": "clap",
    "num_hidden_layers": 16,
    "projection_dim": 512,
    "projection_hidden_act": "relu",
    "text_config": {
        "classifier_dropout": None,
        "fusion_hidden_size": 768,
        "fusion_num_hidden_layers": 2,
        "initializer_range": 0.02,
        "model_type": "clap_text_model",
        "projection_hidden_size": 768,
    },
    "transformers_version": "4.36.0.dev0",
}

# preprocessor_config.json: differs from ClapFeatureExtractor() (frequency_min 50, not 0; truncation rand_trunc, not
# fusion), which moves the features by up to 17 dB.
CLAP_PREPROCESSOR_CONFIG = {
    "chunk_length_s": 10,
    "feature_extractor_type": "ClapFeatureExtractor",
    "feature_size": 64,
    "fft_window_size": 1024,
    "frequency_max": 14000,
    "frequency_min": 50,
    "hop_length": 480,
    "max_length_s": 10,
    "n_fft": 1024,
    "nb_frequency_bins": 513,
    "nb_max_frames": 1000,
    "nb_max_samples": 480000,
    "padding": "repeatpad",
    "padding_side": "right",
    "padding_value": 0.0,
    "processor_class": "ClapProcessor",
    "return_attention_mask": False,
    "sampling_rate": 48000,
    "top_db": None,
    "truncation": "rand_trunc",
}

# tokenizer_config.json and special_tokens_map.json (RoBERTa-base).
CLAP_TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": "<s>",
    "cls_token": "<s>",
    "eos_token": "</s>",
    "errors": "replace",
    "mask_token": "<mask>",
    "model_max_length": 512,
    "pad_token": "<pad>",
    "processor_class": "ClapProcessor",
    "sep_token": "</s>",
    "special_tokens_map_file": None,
    "tokenizer_class": "RobertaTokenizer",
    "trim_offsets": True,
    "unk_token": "<unk>",
}

#
CLAP_SPECIAL_TOKENS_MAP = {
    "bos_token": "<s>",
    "cls_token": "<s>",
    "eos_token": "</s>",
    "mask_token": {"content": "<mask>", "lstrip": True, "normalized": False, "rstrip": False, "single_word": False},
    "pad_token": "<pad>",
    "sep_token": "</s>",
    "unk_token": "<unk>",
}

# Stable Diffusion 1.5 (runwayml/stable-diffusion-v1-5), the layout of riffusion/riffusion-model-v1: model_index.json.
SD15_MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.6.0",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

# unet/config.json: differs from UNet2DConditionModel() in cross_attention_dim (768, not 1280) and sample_size.
SD15_UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.6.0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

# vae/config.json (AutoencoderKL() is a one-block toy; no scaling_factor key: 0.18215).
SD15_VAE_CONFIG = {
    "_class_name": "AutoencoderKL",
    "_diffusers_version": "0.6.0",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
}

# text_encoder/config.json: CLIP ViT-L/14's text tower.
SD15_TEXT_ENCODER_CONFIG = {
    "_name_or_path": "openai/clip-vit-large-patch14",
    "architectures": ["CLIPTextModel"],
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "torch_dtype": "float32",
    "transformers_version": "4.22.0.dev0",
    "vocab_size": 49408,
}

# scheduler/scheduler_config.json (key order as on the Hub: clip_sample last).
SD15_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}

# feature_extractor/preprocessor_config.json (for the safety checker, which the stand-in leaves out).
SD15_FEATURE_EXTRACTOR_CONFIG = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}

# tokenizer/tokenizer_config.json and special_tokens_map.json.
SD15_TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": {
        "__type": "AddedToken",
        "content": "<|startoftext|>",
        "lstrip": False,
        "normalized": True,
        "rstrip": False,
        "single_word": False,
    },
    "do_lower_case": True,
    "eos_token": {
        "__type": "AddedToken",
        "content": "<|endoftext|>",
        "lstrip": False,
        "normalized": True,
        "rstrip": False,
        "single_word": False,
    },
    "errors": "replace",
    "model_max_length": 77,
    "name_or_path": "openai/clip-vit-large-patch14",
    "pad_token": "<|endoftext|>",
    "special_tokens_map_file": "./special_tokens_map.json",
    "tokenizer_class": "CLIPTokenizer",
    "unk_token": {
        "__type": "AddedToken",
        "content": "<|endoftext|>",
        "lstrip": False,
        "normalized": True,
        "rstrip": False,
        "single_word": False,
    },
}

#
SD15_SPECIAL_TOKENS_MAP = {
    "bos_token": {
        "content": "<|startoftext|>",
        "lstrip": False,
        "normalized": True,
        "rstrip": False,
        "single_word": False,
    },
    "eos_token": {
        "content": "<|endoftext|>",
        "lstrip": False,
        "normalized": True,
        "rstrip": False,
        "single_word": False,
    },
    "pad_token": "<|endoftext|>",
    "unk_token": {
        "content": "<|endoftext|>",
        "lstrip": False,
        "normalized": True,
        "rstrip": False,
        "single_word": False,
    },
}

# lllyasviel/sd-controlnet-canny config.json: the SD 1.5 ControlNet (= ControlNetModel.from_unet of the SD 1.5 UNet).
CONTROLNET_CONFIG = {
    "_class_name": "ControlNetModel",
    "_diffusers_version": "0.14.0.dev0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "class_embed_type": None,
    "conditioning_embedding_out_channels": [16, 32, 96, 256],
    "controlnet_conditioning_channel_order": "rgb",
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "projection_class_embeddings_input_dim": None,
    "resnet_time_scale_shift": "default",
    "upcast_attention": False,
    "use_linear_projection": False,
}

# facebook/musicgen-small preprocessor_config.json (EncodecFeatureExtractor() defaults are 24 kHz, right padding).
MUSICGEN_PREPROCESSOR_CONFIG = {
    "chunk_length_s": None,
    "feature_extractor_type": "EncodecFeatureExtractor",
    "feature_size": 1,
    "overlap": None,
    "padding_side": "left",
    "padding_value": 0.0,
    "processor_class": "MusicgenProcessor",
    "return_attention_mask": True,
    "sampling_rate": 32000,
}

# generation_config.json, written without a final newline (224 bytes, as listed).
MUSICGEN_GENERATION_CONFIG = {
    "_from_model_config": False,
    "bos_token_id": 2048,
    "decoder_start_token_id": 2048,
    "do_sample": True,
    "guidance_scale": 3.0,
    "max_length": 1500,
    "pad_token_id": 2048,
    "transformers_version": "4.31.0.dev0",
}

AUDIOSET_LABELS = tuple(
    """
Speech
Male speech, man speaking
Female speech, woman speaking
Child speech, kid speaking
Conversation
Narration, monologue
Babbling
Speech synthesizer
Shout
Bellow
Whoop
Yell
Battle cry
Children shouting
Screaming
Whispering
Laughter
Baby laughter
Giggle
Snicker
Belly laugh
Chuckle, chortle
Crying, sobbing
Baby cry, infant cry
Whimper
Wail, moan
Sigh
Singing
Choir
Yodeling
Chant
Mantra
Male singing
Female singing
Child singing
Synthetic singing
Rapping
Humming
Groan
Grunt
Whistling
Breathing
Wheeze
Snoring
Gasp
Pant
Snort
Cough
Throat clearing
Sneeze
Sniff
Run
Shuffle
Walk, footsteps
Chewing, mastication
Biting
Gargling
Stomach rumble
Burping, eructation
Hiccup
Fart
Hands
Finger snapping
Clapping
Heart sounds, heartbeat
Heart murmur
Cheering
Applause
Chatter
Crowd
Hubbub, speech noise, speech babble
Children playing
Animal
Domestic animals, pets
Dog
Bark
Yip
Howl
Bow-wow
Growling
Whimper (dog)
Cat
Purr
Meow
Hiss
Caterwaul
Livestock, farm animals, working animals
Horse
Clip-clop
Neigh, whinny
Cattle, bovinae
Moo
Cowbell
Pig
Oink
Goat
Bleat
Sheep
Fowl
Chicken, rooster
Cluck
Crowing, cock-a-doodle-doo
Turkey
Gobble
Duck
Quack
Goose
Honk
Wild animals
Roaring cats (lions, tigers)
Roar
Bird
Bird vocalization, bird call, bird song
Chirp, tweet
Squawk
Pigeon, dove
Coo
Crow
Caw
Owl
Hoot
Bird flight, flapping wings
Canidae, dogs, wolves
Rodents, rats, mice
Mouse
Patter
Insect
Cricket
Mosquito
Fly, housefly
Buzz
Bee, wasp, etc.
Frog
Croak
Snake
Rattle
Whale vocalization
Music
Musical instrument
Plucked string instrument
Guitar
Electric guitar
Bass guitar
Acoustic guitar
Steel guitar, slide guitar
Tapping (guitar technique)
Strum
Banjo
Sitar
Mandolin
Zither
Ukulele
Keyboard (musical)
Piano
Electric piano
Organ
Electronic organ
Hammond organ
Synthesizer
Sampler
Harpsichord
Percussion
Drum kit
Drum machine
Drum
Snare drum
Rimshot
Drum roll
Bass drum
Timpani
Tabla
Cymbal
Hi-hat
Wood block
Tambourine
Rattle (instrument)
Maraca
Gong
Tubular bells
Mallet percussion
Marimba, xylophone
Glockenspiel
Vibraphone
Steelpan
Orchestra
Brass instrument
French horn
Trumpet
Trombone
Bowed string instrument
String section
Violin, fiddle
Pizzicato
Cello
Double bass
Wind instrument, woodwind instrument
Flute
Saxophone
Clarinet
Harp
Bell
Church bell
Jingle bell
Bicycle bell
Tuning fork
Chime
Wind chime
Change ringing (campanology)
Harmonica
Accordion
Bagpipes
Didgeridoo
Shofar
Theremin
Singing bowl
Scratching (performance technique)
Pop music
Hip hop music
Beatboxing
Rock music
Heavy metal
Punk rock
Grunge
Progressive rock
Rock and roll
Psychedelic rock
Rhythm and blues
Soul music
Reggae
Country
Swing music
Bluegrass
Funk
Folk music
Middle Eastern music
Jazz
Disco
Classical music
Opera
Electronic music
House music
Techno
Dubstep
Drum and bass
Electronica
Electronic dance music
Ambient music
Trance music
Music of Latin America
Salsa music
Flamenco
Blues
Music for children
New-age music
Vocal music
A capella
Music of Africa
Afrobeat
Christian music
Gospel music
Music of Asia
Carnatic music
Music of Bollywood
Ska
Traditional music
Independent music
Song
Background music
Theme music
Jingle (music)
Soundtrack music
Lullaby
Video game music
Christmas music
Dance music
Wedding music
Happy music
Funny music
Sad music
Tender music
Exciting music
Angry music
Scary music
Wind
Rustling leaves
Wind noise (microphone)
Thunderstorm
Thunder
Water
Rain
Raindrop
Rain on surface
Stream
Waterfall
Ocean
Waves, surf
Steam
Gurgling
Fire
Crackle
Vehicle
Boat, Water vehicle
Sailboat, sailing ship
Rowboat, canoe, kayak
Motorboat, speedboat
Ship
Motor vehicle (road)
Car
Vehicle horn, car horn, honking
Toot
Car alarm
Power windows, electric windows
Skidding
Tire squeal
Car passing by
Race car, auto racing
Truck
Air brake
Air horn, truck horn
Reversing beeps
Ice cream truck, ice cream van
Bus
Emergency vehicle
Police car (siren)
Ambulance (siren)
Fire engine, fire truck (siren)
Motorcycle
Traffic noise, roadway noise
Rail transport
Train
Train whistle
Train horn
Railroad car, train wagon
Train wheels squealing
Subway, metro, underground
Aircraft
Aircraft engine
Jet engine
Propeller, airscrew
Helicopter
Fixed-wing aircraft, airplane
Bicycle
Skateboard
Engine
Light engine (high frequency)
Dental drill, dentist's drill
Lawn mower
Chainsaw
Medium engine (mid frequency)
Heavy engine (low frequency)
Engine knocking
Engine starting
Idling
Accelerating, revving, vroom
Door
Doorbell
Ding-dong
Sliding door
Slam
Knock
Tap
Squeak
Cupboard open or close
Drawer open or close
Dishes, pots, and pans
Cutlery, silverware
Chopping (food)
Frying (food)
Microwave oven
Blender
Water tap, faucet
Sink (filling or washing)
Bathtub (filling or washing)
Hair dryer
Toilet flush
Toothbrush
Electric toothbrush
Vacuum cleaner
Zipper (clothing)
Keys jangling
Coin (dropping)
Scissors
Electric shaver, electric razor
Shuffling cards
Typing
Typewriter
Computer keyboard
Writing
Alarm
Telephone
Telephone bell ringing
Ringtone
Telephone dialing, DTMF
Dial tone
Busy signal
Alarm clock
Siren
Civil defense siren
Buzzer
Smoke detector, smoke alarm
Fire alarm
Foghorn
Whistle
Steam whistle
Mechanisms
Ratchet, pawl
Clock
Tick
Tick-tock
Gears
Pulleys
Sewing machine
Mechanical fan
Air conditioning
Cash register
Printer
Camera
Single-lens reflex camera
Tools
Hammer
Jackhammer
Sawing
Filing (rasp)
Sanding
Power tool
Drill
Explosion
Gunshot, gunfire
Machine gun
Fusillade
Artillery fire
Cap gun
Fireworks
Firecracker
Burst, pop
Eruption
Boom
Wood
Chop
Splinter
Crack
Glass
Chink, clink
Shatter
Liquid
Splash, splatter
Slosh
Squish
Drip
Pour
Trickle, dribble
Gush
Fill (with liquid)
Spray
Pump (liquid)
Stir
Boiling
Sonar
Arrow
Whoosh, swoosh, swish
Thump, thud
Thunk
Electronic tuner
Effects unit
Chorus effect
Basketball bounce
Bang
Slap, smack
Whack, thwack
Smash, crash
Breaking
Bouncing
Whip
Flap
Scratch
Scrape
Rub
Roll
Crushing
Crumpling, crinkling
Tearing
Beep, bleep
Ping
Ding
Clang
Squeal
Creak
Rustle
Whir
Clatter
Sizzle
Clicking
Clickety-clack
Rumble
Plop
Jingle, tinkle
Hum
Zing
Boing
Crunch
Silence
Sine wave
Harmonic
Chirp tone
Sound effect
Pulse
Inside, small room
Inside, large room or hall
Inside, public space
Outside, urban or manmade
Outside, rural or natural
Reverberation
Echo
Noise
Environmental noise
Static
Mains hum
Distortion
Sidetone
Cacophony
White noise
Pink noise
Throbbing
Vibration
Television
Radio
Field recording
""".strip().split("\n")
)
