"""
@article{Shah2025tomocpt,
title = "TomoCPT: a generalizable model for 3D particle detection and localization in cryo-electron tomograms",
author = "Shah, Pranav N. M. and Sanchez-Garcia, Ruben and Stuart, David I.",
journal = "Acta Crystallographica Section D: Structural Biology",
year = "2025",
note = "Focused issue on Image Processing for CryoEM"
}

@article{Liu2024deepetpicker,
title = "DeepETPicker: Fast and accurate 3D particle picking for cryo-electron tomography using weakly supervised deep learning",
author = "Liu, Guole and Niu, Tongxin and Qiu, Mengxuan and Zhu, Yun and Sun, Fei and Yang, Ge",
journal = "Nature Communications",
volume = "15",
year = "2024",
doi = "http://doi.org/10.1038/s41467-024-46041-0"
}

@article{Uddin2024tomopicker,
title = "TomoPicker: Annotation-Efficient Particle Picking in cryo-electron Tomograms",
author = "Uddin, Mostofa Rafid and Ahmed, Ajmain Yasar and Tahmid, Md Toki and Ul Alam, Md Zarif and Freyberg, Zachary and Xu, Min",
journal = "arXiv preprint",
year = "2024"
}
"""
