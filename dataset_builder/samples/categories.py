"""The scene categories of the sample clips, and the words and voices of their stories.

A category (rain, sea, ...) fixes a scene's picture (texture and palette), its background
sound, and how a description (CMD style) or a caption (LSMDC style) tells it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import numpy as np

from . import sound

TextureKind = Literal[
    "streaks", "bands", "blobs", "grid", "flames", "diagonal", "arches", "dots", "vignette", "stars", "sweeps"
]


@dataclasses.dataclass(frozen=True)
class SceneCategory:
    """One kind of scene: how it looks, how it sounds, how people describe it."""

    name: str
    texture: TextureKind
    palette: tuple[tuple[int, int, int], ...]
    synth: Callable[[np.random.Generator, int], np.ndarray]
    descriptions: tuple[str, ...]  # CMD style: full sentences with {a} and {b} as characters
    captions: tuple[str, ...]  # LSMDC style: short, SOMEONE for the character
    flicker: float = 0.02  # frame-to-frame brightness jitter


# fmt: off
CATEGORIES: tuple[SceneCategory, ...] = (
    SceneCategory(
        "rain", "streaks", ((20, 28, 45), (70, 90, 120), (170, 185, 200)), sound.synth_rain,
        ("{a} waits under an awning as heavy rain hammers the empty street.",
         "Rain pours down on {a} and {b}, who argue without looking at each other.",
         "Soaked by the storm, {a} walks home alone through the rain."),
        ("SOMEONE stands in the pouring rain.", "Rain streams down the window as SOMEONE watches.", "SOMEONE runs through the rain."),
    ),
    SceneCategory(
        "sea", "bands", ((10, 30, 60), (30, 90, 140), (200, 220, 230)), sound.synth_sea,
        ("{a} and {b} sit on the shore while waves roll in from the sea.",
         "On the deck of a small boat, {a} stares at the open sea.",
         "The waves crash against the rocks as {a} finally tells {b} the truth."),
        ("SOMEONE gazes out at the sea.", "Waves wash over the beach where SOMEONE walks.", "SOMEONE stands at the water's edge."),
    ),
    SceneCategory(
        "forest_birds", "blobs", ((20, 40, 15), (60, 110, 40), (170, 200, 110)), sound.synth_forest_birds,
        ("{a} leads {b} along a forest path while birds sing overhead.",
         "Deep in the woods, {a} stops to listen to the birds.",
         "Birdsong fills the forest as {a} and {b} make camp."),
        ("SOMEONE walks through the sunlit forest.", "Birds flutter in the trees above SOMEONE.", "SOMEONE pushes through the undergrowth."),
    ),
    SceneCategory(
        "city_traffic", "grid", ((35, 35, 40), (110, 110, 115), (235, 200, 90)), sound.synth_city_traffic,
        ("{a} crosses a busy street, dodging the traffic to catch up with {b}.",
         "Cars rush past as {a} and {b} talk on a crowded city corner.",
         "Stuck in traffic, {a} loses patience and honks at the cars ahead."),
        ("SOMEONE hails a cab on the busy street.", "Traffic streams past SOMEONE.", "SOMEONE weaves between the cars."),
    ),
    SceneCategory(
        "fire", "flames", ((10, 5, 5), (180, 40, 10), (250, 200, 60)), sound.synth_fire,
        ("{a} and {b} huddle around a crackling fire to keep warm.",
         "The house is on fire, and {a} rushes back inside to find {b}.",
         "By the fireplace, {a} burns the old letters one by one."),
        ("SOMEONE feeds the crackling fire.", "Flames light up SOMEONE's face.", "SOMEONE stares into the fire."),
        flicker=0.04,
    ),
    SceneCategory(
        "engine", "diagonal", ((30, 32, 35), (120, 125, 130), (220, 140, 60)), sound.synth_engine,
        ("{a} starts the old truck, and the engine roars to life.",
         "In the engine room, {a} shouts over the noise of the machines at {b}.",
         "{a} drives through the night with the engine droning on."),
        ("SOMEONE revs the engine.", "SOMEONE works under the hood of the car.", "The engine rumbles as SOMEONE drives."),
    ),
    SceneCategory(
        "church_bells", "arches", ((60, 50, 40), (170, 150, 120), (240, 220, 160)), sound.synth_church_bells,
        ("Church bells ring out over the square as {a} arrives for the wedding.",
         "{a} and {b} meet in front of the old church while its bells toll.",
         "The bells toll for the funeral, and {a} stands apart from the mourners."),
        ("SOMEONE looks up at the bell tower.", "Bells ring as SOMEONE enters the church.", "SOMEONE crosses the square by the church."),
    ),
    SceneCategory(
        "festive_music", "dots", ((80, 20, 90), (230, 80, 60), (250, 230, 90)), sound.synth_festive_music,
        ("At a lively party, {a} pulls {b} onto the dance floor as the band plays.",
         "Music and laughter fill the hall while {a} raises a toast.",
         "{a} dances alone at the festival, happier than in years."),
        ("SOMEONE dances to the music.", "The band plays as SOMEONE claps along.", "SOMEONE joins the celebration."),
        flicker=0.05,
    ),
    SceneCategory(
        "tense_music", "vignette", ((5, 5, 8), (90, 15, 20), (200, 170, 150)), sound.synth_tense_music,
        ("Tension rises as {a} creeps down a dark corridor, unaware that {b} is watching.",
         "{a} holds a gun on {b} while ominous music builds.",
         "In a dim room, {a} opens the envelope with shaking hands."),
        ("SOMEONE edges along the dark hallway.", "SOMEONE freezes, listening.", "SOMEONE slowly opens the door."),
    ),
    SceneCategory(
        "night_crickets", "stars", ((5, 8, 25), (30, 40, 80), (240, 240, 210)), sound.synth_night_crickets,
        ("Late at night, {a} and {b} lie in the grass while crickets chirp around them.",
         "Crickets sing in the dark as {a} sneaks out of the house.",
         "Under the stars, {a} waits for {b}, who never comes."),
        ("SOMEONE lies awake under the stars.", "Crickets chirp as SOMEONE steps outside.", "SOMEONE walks across the moonlit field."),
    ),
    SceneCategory(
        "wind", "sweeps", ((90, 80, 40), (170, 160, 90), (235, 225, 170)), sound.synth_wind,
        ("A cold wind sweeps across the plains as {a} rides toward the ranch.",
         "{a} and {b} struggle against the wind on the hilltop.",
         "The wind howls around the lonely farmhouse where {a} waits."),
        ("SOMEONE squints into the wind.", "Wind bends the grass around SOMEONE.", "SOMEONE pulls a coat tight against the wind."),
    ),
)
# fmt: on
CATEGORY_NAMES = tuple(c.name for c in CATEGORIES)
CATEGORIES_BY_NAME = {c.name: c for c in CATEGORIES}

# The characters, their lines, and the voices that speak them (espeak-ng voice+variant, pitch).
NAMES = ("Anna", "Marcus", "Lena", "Victor", "Rosa", "Sam", "Clara", "Jonah", "Mira", "Theo", "Ines", "Walter")
DIALOGUE = (
    "We have to leave before it gets dark.",
    "I told you this would happen.",
    "Do you remember the last time we were here?",
    "Nobody is coming to help us.",
    "Keep your voice down, they can hear us.",
    "I never wanted any of this.",
    "Where were you last night?",
    "It is not too late to go back.",
    "Tell me the truth, just this once.",
    "I found the letter in your coat.",
    "We can still make it if we hurry.",
    "You should not have come here.",
    "Everything is going to be fine.",
    "Look at me. I am not afraid of you.",
    "How long have you known?",
    "Let's just get out of here.",
    "I waited for you all day.",
    "This was my father's house.",
    "Promise me you will come back.",
    "Something is wrong. I can feel it.",
    "Give me the keys.",
    "Why did you lie to me?",
    "I think we are being followed.",
    "Happy birthday, my dear friend.",
)
CONNECTORS = ("Then", "Later", "Soon after", "Meanwhile", "After that", "Before long")
VOICES = (("en-us+m3", 45), ("en-gb+f3", 65), ("en-us+f2", 60), ("en+m1", 40), ("en-gb-x-rp+m5", 50), ("en-us+f4", 70))
